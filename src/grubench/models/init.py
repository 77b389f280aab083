"""The LSTM's gate-bias initialisations, for torch's fused nn.LSTM and for the cell LSTMs.

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

`FusedLSTM` is torch's nn.LSTM (cuDNN on a GPU, oneDNN on a CPU) with this option; the cells of
`grubench.models.cells` with a forget gate take the same `forget_bias` (and `t_max`) arguments.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FORGET_BIAS_CHOICES = "null (torch's default), a number (1.0: Jozefowicz et al. 2015) or 'chrono'"


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


class FusedLSTM(nn.LSTM):
    """torch.nn.LSTM with a choice of forget-gate bias (see the module docstring).

    Args:
        forget_bias: None (torch's initialisation), a number, or "chrono".
        t_max: the longest dependency for chrono; None: `seq_len`.
        seq_len: the task's sequence length (`SequenceModel` passes it).
        *args, **kwargs: as torch.nn.LSTM (input_size, hidden_size, num_layers, ...).

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
        if not self.bias or self.forget_bias is None:
            return
        H = self.hidden_size
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[: 2 if self.bidirectional else 1]:
                b_ih = getattr(self, f"bias_ih_l{layer}{suffix}")
                b_hh = getattr(self, f"bias_hh_l{layer}{suffix}")
                zero = (b_hh[H:2 * H], b_hh[:H]) if self.forget_bias == "chrono" else (b_hh[H:2 * H],)
                set_gate_biases(b_ih[H:2 * H], b_ih[:H], self.forget_bias, self.t_max, zero)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_bias={self.forget_bias!r}"
