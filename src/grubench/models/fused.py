"""The cells that a fused kernel computes exactly, and how a `Recurrent` runs them there.

The LSTM kernel (on a CPU grubench's, `cpu_kernels.lstm`; on a GPU torch.lstm, cuDNN; torch.lstm,
oneDNN, on a CPU where grubench's cannot run) computes, with blocks in the order i, f, g, o,

    [i; f; g; o]_t = W x_t + U h_{t-1} + b_ih + b_hh         W [4H, F], U [4H, H]
    c_t = sigmoid(f_t) c_{t-1} + sigmoid(i_t) tanh(g_t)       h_t = sigmoid(o_t) tanh(c_t)

A cell of the LSTM family becomes that kernel by building its four blocks from its own weights:

    lstm_eq (LSTMCell)      its i, f, g, o blocks; b_ih = its one bias, b_hh = 0
    lstm_nfg, nig, nog      the missing gate's block: W = 0, U = 0, b = OPEN, so that the gate is
                            sigmoid(OPEN) = 1 exactly (float32, bfloat16 and float16 all round it
                            to 1) and its derivative sigmoid (1 - sigmoid) = 0 exactly
    lstm_cifg (coupled)     f's block is minus i's: sigmoid(-a) = 1 - sigmoid(a), equal up to
                            rounding (the coupled cell's 1 - sigmoid(a) rounds once more)
    TorchLSTMCell           its own four tensors

and torch.nn.GRU's and torch.nn.RNN's twins (TorchGRUCell, TorchRNNCell) run torch.gru and
torch.rnn_tanh on their own tensors. Gradients reach the cell's parameters through the blocks
(autograd of the concatenation), so training is unchanged: the fused path equals the step loop
within float32 rounding, values and gradients (tests/test_fused.py holds both to 1e-5).

JANET has no such form (its output is c_t, not o tanh(c_t)); on a CPU it runs grubench's own
kernel (`cpu_kernels.janet`: its equations, forward and backward through time in C++), which a
run records as the path "kernel"; on a GPU the step loop. So do the minimal RNNs (minGRU, minLSTM):
their step h_t = a_t h_{t-1} + b_t has a_t and b_t from the input alone, computed for all steps
at once as the step computes them (`MinimalCell.terms`), then the recurrence in C++
(`cpu_kernels.linear_recurrence`); on a GPU their scan (`Recurrent`'s `parallel`). The
document's GRU (its reset gate acts before the recurrent product) always runs the step loop.

Faster is not always: `preferred` is `impl=auto`'s choice, a table made from
`scripts/bench_cells.py --loop` (training steps, batch 64, one thread; docs/models.md has the
numbers). On a GPU the fused kernel (cuDNN) always. On a CPU the LSTM kernel (grubench's, and
before it oneDNN's) is faster than the loop for the four-gate cells at every size measured (H
64-256, T 30-200); a three-gate ablation pays there for a fourth, constant gate: with oneDNN's
kernel that lost from H = 128 on, and `auto` keeps the loop there (with grubench's, H 128, T 100:
48 ms against the loops' 54-57; H 256: 150 against 141-143); torch.gru is level with the loop;
torch.rnn_tanh is no faster than the loop; grubench's kernels (JANET, the minimal RNNs) are faster
than their loops at every size measured.
"""

from __future__ import annotations

import torch

from grubench.models import cpu_kernels
from grubench.models.cells import (
    Cell,
    JANETCell,
    LSTMCell,
    LSTMCoupledCell,
    LSTMNoForgetCell,
    LSTMNoInputCell,
    LSTMNoOutputCell,
    State,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
)
from grubench.models.minimal import MinGRUCell, MinLSTMCell

OPEN = 1.0e4    # a gate pre-activation whose sigmoid is 1 exactly, in every floating dtype

# The gate blocks each LSTM-family cell keeps, in its weights' order (torch's order is "ifgo").
LSTM_GATES: dict[type, str] = {
    LSTMCell: "ifgo",
    TorchLSTMCell: "ifgo",
    LSTMNoForgetCell: "igo",
    LSTMNoInputCell: "fgo",
    LSTMNoOutputCell: "ifg",
    LSTMCoupledCell: "igo",   # f = 1 - i
}
KERNELS = {**{cls: "lstm" for cls in LSTM_GATES}, TorchGRUCell: "gru", TorchRNNCell: "rnn_tanh",
           JANETCell: "janet", MinGRUCell: "linear", MinLSTMCell: "linear"}
OWN = ("janet", "linear")   # grubench's CPU kernels (cpu_kernels); the others are torch's


def kernel_of(cell: Cell) -> str | None:
    """The fused kernel that computes `cell` exactly ("lstm", "gru", "rnn_tanh", "janet", "linear"),
    None if none.
    Exact classes only: a subclass may change the equations."""
    return KERNELS.get(type(cell))


def runnable(device_type: str, kernel: str | None = None, x: torch.Tensor | None = None) -> str | None:
    """Why the fused kernels (or this one, on this input) cannot run here now (None: they can).
    torch's own nn.LSTM fails under CPU autocast (oneDNN has no mixed bfloat16/float32
    primitive), so the fused path does too; grubench's kernels run on a CPU only."""
    if device_type == "cpu" and torch.is_autocast_enabled("cpu"):
        return "the fused kernels do not run under CPU autocast (bf16-mixed); use impl=auto or impl=loop"
    if kernel in OWN:
        if device_type != "cpu":
            return f"grubench's {kernel} kernel runs on a CPU (not {device_type}); use impl=auto or impl=loop"
        problem = cpu_kernels.why_not_here(x) if x is not None else None
        if problem:
            return f"grubench's {kernel} kernel cannot run here: {problem}"
    return None


def preferred(cell: Cell, device_type: str) -> bool:
    """Whether `impl=auto` runs `cell` on its fused kernel on this device type (the module
    docstring); the cell must have one."""
    kernel = kernel_of(cell)
    if runnable(device_type, kernel):
        return False
    if kernel in OWN:
        return not isinstance(cpu_kernels.extension(), str)
    if device_type != "cpu":
        return True
    if kernel == "lstm":
        return len(LSTM_GATES[type(cell)]) == 4 or cell.hidden_size < 128
    return kernel == "gru"


def path(kernel: str, x: torch.Tensor) -> str:
    """Whose kernel the fused path runs on `x`: "kernel" (grubench's: JANET's, the minimal RNNs',
    and the LSTM's on a CPU) or "fused" (torch's)."""
    if kernel in OWN or kernel == "lstm" and cpu_kernels.why_not_here(x) is None:
        return "kernel"
    return "fused"


def lstm_params(cell: Cell) -> list[torch.Tensor]:
    """[W [4H, F], U [4H, H], b_ih [4H], b_hh [4H]] in torch's block order i, f, g, o, built from
    the cell's own parameters (the module docstring)."""
    if isinstance(cell, TorchLSTMCell):
        return [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    gates = LSTM_GATES[type(cell)]
    own = [dict(zip(gates, t.chunk(len(gates)))) for t in (cell.weight_ih, cell.weight_hh, cell.bias)]
    if isinstance(cell, LSTMCoupledCell):
        for blocks in own:
            blocks["f"] = -blocks["i"]
    H = cell.hidden_size
    missing = (cell.weight_ih.new_zeros(H, cell.input_size), cell.weight_hh.new_zeros(H, H),
               cell.bias.new_full((H,), OPEN))
    W, U, b = (torch.cat([blocks.get(g, empty) for g in "ifgo"])
               for blocks, empty in zip(own, missing))
    return [W, U, b, torch.zeros_like(b)]


def run(cell: Cell, x: torch.Tensor, state: State, reverse: bool = False,
        train: bool = True) -> tuple[torch.Tensor, State]:
    """One layer, one direction on the cell's fused kernel: x [B, T, F], state (h [B, H] or the
    pair (h, c)) -> (outputs [B, T, H], final state), as `Recurrent`'s step loop gives them."""
    kernel = kernel_of(cell)
    final: State
    if kernel is None:
        raise ValueError(f"{type(cell).__name__} has no fused form")
    problem = runnable(x.device.type, kernel, x)
    if problem:
        raise RuntimeError(f"impl=fused: {problem}")
    if reverse:
        x = x.flip(1)
    if kernel == "linear":
        a, b = cell.terms(cell.project(x))
        out = cpu_kernels.linear_recurrence(a, b, state)
        final = out[:, -1]
    elif kernel == "janet":
        out = cpu_kernels.janet(x, state, cell.weight_ih, cell.weight_hh, cell.bias, cell.beta)
        final = out[:, -1]
    elif kernel == "lstm" and path(kernel, x) == "kernel":
        out, final = cpu_kernels.lstm(x, *state, *lstm_params(cell))
    elif kernel == "lstm":
        h, c = state
        out, h_n, c_n = torch.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)), lstm_params(cell),
                                   True, 1, 0.0, train, False, True)
        final = (h_n[0], c_n[0])
    else:
        params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        out, h_n = getattr(torch, kernel)(x, state.unsqueeze(0), params, True, 1, 0.0, train, False, True)
        final = h_n[0]
    return (out.flip(1) if reverse else out), final
