"""Initialisations: the LSTM's gate biases (torch's fused nn.LSTM and the cell LSTMs), and
Keras's defaults for a whole model (`keras_init`, the option `model.init=keras`).

`forget_bias` chooses one of three:

    None        every bias U(-1/sqrt(H), 1/sqrt(H)), torch's default (the `lstm` config)
    a number b  the forget gate's bias is b for every unit, the other biases stay as they were;
                b = 1.0 is Jozefowicz et al. 2015 (and Keras' unit_forget_bias), who found that
                it closes the gap between the LSTM and the GRU
    "chrono"    chrono initialisation (Tallec & Ollivier 2018):
                    b_f = log(u),  u ~ U[1, t_max - 1]      one draw per unit
                    b_i = -b_f
                so that unit j starts with a memory of about exp(b_f[j]) steps, spread up to the
                longest dependency t_max (usually the task's sequence length)

Only the bias changes; weights keep their initialisation. torch's layers keep two biases per
gate, b_ih and b_hh, which add: the chosen value goes to b_ih and the same block of b_hh is set
to 0, so that b_ih + b_hh is the value and Keras' single bias (their sum) equals it exactly.

`FusedLSTM` is torch's nn.LSTM (cuDNN on a GPU, grubench's kernel on a CPU) with this option; the cells of
`grubench.models.cells` with a forget gate take the same `forget_bias` (and `t_max`) arguments.

`model.init` chooses the weights' initialisation for the whole model:

    torch   every layer's own: torch's fused layers and the cells U(-1/sqrt(H), 1/sqrt(H)) for
            every weight and bias, the head nn.Linear's kaiming-uniform (the default)
    keras   Keras 3's defaults (the document's framework; `keras_init`): Glorot-uniform input
            kernels and dense layers, orthogonal recurrent kernels, zero biases, and for a cell
            with a forget gate b_f = 1 (Keras' unit_forget_bias=True)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grubench.models.cpu_kernels import LSTM

FORGET_BIAS_CHOICES = "null (torch's default), a number (1.0: Jozefowicz et al. 2015) or 'chrono'"
INITS = ("torch", "keras")


def check_forget_bias(forget_bias, t_max: int | None, owner: str) -> float | str | None:
    """The validated option: None, a float, or "chrono" (which needs t_max >= 2)."""
    if forget_bias is None:
        return None
    if isinstance(forget_bias, str):
        if forget_bias != "chrono":
            raise ValueError(f"{owner}: forget_bias must be {FORGET_BIAS_CHOICES}, got {forget_bias!r}")
        if t_max is None:
            raise ValueError(f"{owner}: chrono initialisation needs t_max, the longest dependency to expect "
                             "(the sequence length)")
        if t_max < 2:
            raise ValueError(f"{owner}: t_max must be at least 2, got {t_max!r}")
        return forget_bias
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) or not math.isfinite(forget_bias):
        raise ValueError(f"{owner}: forget_bias must be {FORGET_BIAS_CHOICES}, got {forget_bias!r}")
    return float(forget_bias)


@torch.no_grad()
def set_gate_biases(forget: torch.Tensor, input: torch.Tensor | None, forget_bias, t_max: int | None,
                    zero: tuple[torch.Tensor, ...] = ()) -> None:
    """Fill the forget gate's bias block `forget` [H] (and, for chrono, the input gate's `input`
    [H], if the cell has one) as `forget_bias` says; `zero` are the matching blocks of a second
    bias vector (torch's b_hh), set to 0 whenever a value is set."""
    if forget_bias is None:
        return
    if forget_bias == "chrono":
        forget.uniform_(1.0, float(t_max - 1)).log_()
        if input is not None:
            input.copy_(-forget)
    else:
        forget.fill_(forget_bias)
    for block in zero:
        block.zero_()


class FusedLSTM(LSTM):
    """torch.nn.LSTM (on grubench's CPU kernel where it runs: `grubench.models.LSTM`) with a choice
    of forget-gate bias (see the module docstring).

    Args:
        forget_bias: None (torch's initialisation), a number, or "chrono".
        t_max: the longest dependency for chrono; None: `seq_len`.
        seq_len: the task's sequence length (`SequenceModel` passes it).
        *args, **kwargs: as torch.nn.LSTM (input_size, hidden_size, num_layers, ...), and `impl`.

    Gate blocks are torch's i, f, g, o; for every layer and direction, bias_ih's f block gets the
    value and bias_hh's f block 0 (chrono: the i blocks too, with -b_f).
    """

    def __init__(self, *args, forget_bias: float | str | None = None, t_max: int | None = None,
                 seq_len: int | None = None, **kwargs):
        self.t_max = t_max if t_max is not None else seq_len
        self.forget_bias = check_forget_bias(forget_bias, self.t_max, "FusedLSTM")
        if self.forget_bias is not None and not kwargs.get("bias", True):
            raise ValueError("FusedLSTM: forget_bias needs the biases (bias=True)")
        super().__init__(*args, **kwargs)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias:
            fill_lstm_biases(self, self.forget_bias, self.t_max)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias!r}"


def fill_lstm_biases(lstm: nn.LSTM, forget_bias, t_max: int | None) -> None:
    """`set_gate_biases` on every layer and direction of torch's nn.LSTM (gate blocks i, f, g, o):
    bias_ih's f block (chrono: and i block) gets the value, bias_hh's same blocks 0."""
    if forget_bias is None:
        return
    H = lstm.hidden_size
    for layer in range(lstm.num_layers):
        for suffix in ("", "_reverse")[: 2 if lstm.bidirectional else 1]:
            b_ih = getattr(lstm, f"bias_ih_l{layer}{suffix}")
            b_hh = getattr(lstm, f"bias_hh_l{layer}{suffix}")
            zero = (b_hh[H:2 * H], b_hh[:H]) if forget_bias == "chrono" else (b_hh[H:2 * H],)
            set_gate_biases(b_ih[H:2 * H], b_ih[:H], forget_bias, t_max, zero)


@torch.no_grad()
def keras_init(model: nn.Module) -> None:
    """Keras 3's default initialisation on every layer of `model`, in place:

        input kernels W_ih, dense layers   Glorot uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out))
                                           (torch's weight [G*H, F]: fan_in F, fan_out G*H, as
                                           Keras's kernel [F, G*H])
        recurrent kernels W_hh [G*H, H]    orthogonal: W_hh^T W_hh = I_H (Keras's [H, G*H] has
                                           orthonormal rows: the same matrix transposed)
        embeddings                         U(-0.05, 0.05)
        biases                             0; then a cell with a forget gate gets b_f = 1 (Keras'
                                           unit_forget_bias=True) unless its config chose another
                                           `forget_bias` (chrono, say), which it keeps; JANET keeps
                                           its chrono forget bias, its authors' initialisation.

    torch's two biases per gate (b_ih + b_hh) are both 0, so their sum is Keras's one bias.
    """
    from grubench.models.cells import (  # cells import this module
        ForgetGateCell,
        JANETCell,
    )

    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.uniform_(module.weight, -0.05, 0.05)
            continue
        for name, parameter in module.named_parameters(recurse=False):
            if name.startswith("weight_hh"):
                nn.init.orthogonal_(parameter)
            elif name.startswith("weight"):
                nn.init.xavier_uniform_(parameter)
            elif name.startswith("bias"):
                nn.init.zeros_(parameter)
        if isinstance(module, nn.LSTM) and module.bias:
            chosen = getattr(module, "forget_bias", None)
            fill_lstm_biases(module, 1.0 if chosen is None else chosen, getattr(module, "t_max", None))
        elif isinstance(module, ForgetGateCell):
            module.fill_gate_biases(1.0 if module.forget_bias is None else module.forget_bias)
        elif isinstance(module, JANETCell):
            module.fill_chrono_biases()
