"""`Recurrent`: runs any cell of `grubench.models.cells` over the time axis, like torch.nn.GRU.

    x [B, T, F] (batch first)
      layer l = 0 .. L-1, direction d = 0 (forward) and, if bidirectional, 1 (backward):
        the fused path, for a cell that a fused kernel computes exactly (torch's for the LSTM
        family and torch's twins, grubench's CPU kernels for JANET and the minimal RNNs;
        `grubench.models.fused`) where `impl` chooses it:
            outputs, state = fused.run(cell, x_l, state)    one call of the kernel
        the step loop, for every other cell:
            xp = cell.project(x_l)              every step's input terms in one matmul [B, T, G*H]
            for t in time (reversed for d = 1):
                state = cell.step(xp[:, t], state)
        or, for a cell with a parallel form (`scan`, the minimal RNNs) when `parallel` is true:
            outputs, state = cell.scan(xp, state)       the whole sequence at once
        x_{l+1} = concat over d of the outputs h_t   [B, T, D*H], then dropout if l < L-1
      -> (out [B, T, D*H], final state)

The final state is laid out as torch's: h_n [L*D, B, H], or (h_n, c_n) for cells with a
memory cell; index l*D + d. Cells are held in `cells` in that same order.

Sequences of unequal length: `lengths` [B] gives each sequence's real steps (padding after
them). Past a sequence's end its state stops changing (the step loop keeps the old state, the
scan gets a_t = 1, b_t = 0), so the forward direction's final state is the state after its last
real step and the backward direction starts at that step; outputs at padded steps are zeros, as
in torch's `pad_packed_sequence`. Without `lengths` the loop is the plain one, with no masking.
Sequences with `lengths` always run the step loop (or the scan), never the fused path.

`last_impl` says which path the last forward pass ran: "fused" (torch's kernels), "kernel"
(grubench's), "loop" or "scan" (a run records it as the tag model/impl).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Callable

import torch
from torch import nn

from grubench.errors import first_line
from grubench.models import fused
from grubench.models.cells import Cell, State
from grubench.spec import require_positive

log = logging.getLogger("grubench")

IMPLS = ("auto", "loop", "fused")


def accepts(factory: Callable, name: str) -> bool:
    """Whether `factory` has a parameter called `name` (not merely **kwargs)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get(name)
    return param is not None and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)


def fixed(factory: Callable, name: str) -> bool:
    """Whether a functools.partial already gives the keyword `name` a value other than None."""
    return isinstance(factory, functools.partial) and factory.keywords.get(name) is not None


class Recurrent(nn.Module):
    """A stack of recurrent layers built from one cell type, called like torch.nn.GRU.

    Args:
        cell: the cell class or factory, called as cell(input_size, hidden_size) for each layer
            and direction, e.g. `grubench.models.GRUCell` or `functools.partial(JANETCell, beta=1)`.
        input_size: features F per step of the input.
        hidden_size: units H per layer and direction.
        num_layers: stacked layers L; layer l > 0 reads the D*H outputs of layer l - 1.
        dropout: dropout on the outputs of every layer but the last (torch's convention).
        bidirectional: add a backward direction per layer (D = 2); outputs are [forward, backward].
        batch_first: True: x is [B, T, F] and out [B, T, D*H]; False: time first.
        seq_len: the task's sequence length, given to cells that take `t_max` (JANET's chrono
            initialisation) unless the cell factory already fixes it.
        compile: run each cell's step (or scan) through torch.compile; where compilation fails
            (no compiler, unsupported platform) one line is logged and it runs eagerly.
        parallel: for cells that have a parallel form over time (a `scan` method, the minimal
            RNNs of `grubench.models.minimal`), run it instead of the step loop (True), or "auto":
            the scan on a GPU and under `compile`, the step loop on a CPU, where it was measured
            2.5-4x faster than the scan at the study's sizes (docs/models.md); other cells loop.
        impl: "auto": torch's fused kernel for a cell it computes exactly, where it was measured
            faster than the loop (`grubench.models.fused.preferred`), else the step loop, and the
            loop whenever `compile` asks for the step to be compiled; "loop": always the step loop
            (the reference every path is tested against); "fused": the fused kernel, refused for a
            cell that has none.
    """

    def __init__(self, cell: Callable[..., Cell], input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, batch_first: bool = True,
                 seq_len: int | None = None, compile: bool = False, parallel: bool | str = True,
                 impl: str = "auto"):
        super().__init__()
        require_positive(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        if parallel not in (True, False, "auto"):
            raise ValueError(f"parallel must be true, false or auto, got {parallel!r}")
        extra = {}
        if seq_len is not None and accepts(cell, "t_max") and not fixed(cell, "t_max"):
            extra["t_max"] = seq_len
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            cell(input_size if layer == 0 else self.directions * hidden_size, hidden_size, **extra)
            for layer in range(num_layers)
            for _ in range(self.directions)
        )
        if not isinstance(self.cells[0], Cell):
            raise ValueError(f"cell must build a grubench.models.cells.Cell, got {type(self.cells[0]).__name__}")
        if impl == "fused" and fused.kernel_of(self.cells[0]) is None:
            raise ValueError(f"impl=fused: {type(self.cells[0]).__name__} has no fused form (the LSTM family, "
                             "JANET, the minimal RNNs and torch's twin cells have one); use impl=auto or impl=loop")
        if impl == "fused" and compile:
            raise ValueError("impl=fused runs no step loop to compile: set compile=false or impl=loop")
        if impl == "fused" and parallel is True and hasattr(self.cells[0], "scan"):
            raise ValueError("impl=fused runs no scan: set parallel=false or parallel=auto")
        self.dropout = nn.Dropout(dropout)
        self.impl = impl
        self.last_impl: str | None = None
        self.compile = compile
        self.parallel = parallel if hasattr(self.cells[0], "scan") else False   # True, "auto" or False
        self._compiled: list[Callable] | None = None
        if compile:
            problem = compile_problem()
            if problem:
                log.warning("torch.compile unavailable (%s); the cell step runs eagerly", problem)
            else:
                self._compiled = [_compiled_step(c, "scan" if self.parallel else "step") for c in self.cells]

    def forward(self, x: torch.Tensor, state: State | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x [B, T, F] (batch_first) -> (out [B, T, D*H], final state [L*D, B, H] or a pair of them).

        `state` is an initial state in the same layout as the final one; None starts from zeros.
        `lengths` [B] (integers, 1..T): each sequence's real steps, the padding after them (the
        module docstring); None: every sequence has T steps.
        """
        if not self.batch_first:
            x = x.transpose(0, 1)
        keep = None  # [B, T, 1] bool: the real steps
        if lengths is not None:
            keep = (torch.arange(x.shape[1], device=x.device) < lengths.to(x.device).unsqueeze(1)).unsqueeze(-1)
        finals = []
        first = self.cells[0]
        kernel = fused.kernel_of(first)
        use_scan = self.parallel is True or bool(self.parallel) and (self.compile or x.device.type != "cpu")
        use_fused = (keep is None and not self.compile and not use_scan and kernel is not None
                     and (self.impl == "fused" or self.impl == "auto" and fused.preferred(first, x.device.type)
                          and fused.runnable(x.device.type, kernel, x) is None))
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                cell = self.cells[index]
                reverse = direction == 1
                if use_fused:
                    start = cell.initial_state(x) if state is None else _pick(state, index)
                    out, final = fused.run(cell, x, start, reverse, self.training)
                elif use_scan:
                    scan = self._compiled[index] if self._compiled else cell.scan
                    start = None if state is None else _pick(state, index)
                    out, final = self._scan(cell, scan, x, start, reverse, keep)
                else:
                    start = cell.initial_state(x) if state is None else _pick(state, index)
                    step = self._compiled[index] if self._compiled else cell.step
                    out, final = self._run(cell, step, x, start, reverse, keep)
                outputs.append(out)
                finals.append(final)
            x = outputs[0] if self.directions == 1 else torch.cat(outputs, dim=-1)
            if layer < self.num_layers - 1:
                x = self.dropout(x)
        if not self.batch_first:
            x = x.transpose(0, 1)
        if use_fused:
            self.last_impl = fused.path(kernel, x)
        else:
            self.last_impl = "scan" if use_scan else "loop"
        if isinstance(finals[0], tuple):
            return x, tuple(torch.stack(parts) for parts in zip(*finals))
        return x, torch.stack(finals)

    @staticmethod
    def _run(cell: Cell, step: Callable, x: torch.Tensor, state: State, reverse: bool,
             keep: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One layer, one direction: x [B, T, F] -> (outputs [B, T, H], final state). `keep`
        [B, T, 1] bool marks the real steps; at the others the state stays and the output is 0."""
        projected = cell.project(x).unbind(1)  # unbind, not x[:, t]: one backward node, not T
        weights = cell.recurrent_weights()
        if reverse:
            projected = projected[::-1]
        outputs = []
        if keep is None:
            for xp in projected:
                state = step(xp, state, *weights)
                outputs.append(cell.output(state))
        else:
            kept = keep.unbind(1)
            for xp, real in zip(projected, kept[::-1] if reverse else kept):
                state = _where(real, step(xp, state, *weights), state)
                outputs.append(cell.output(state).masked_fill(~real, 0.0))
        if reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1), state

    @staticmethod
    def _scan(cell: Cell, scan: Callable, x: torch.Tensor, state: torch.Tensor | None,
              reverse: bool, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer, one direction, all steps at once: x [B, T, F] -> (outputs [B, T, H], final
        state); `keep` as in `_run`."""
        projected = cell.project(x)
        if reverse:
            projected = projected.flip(1)
        if keep is None:
            outputs, state = scan(projected, state)
        else:
            outputs, state = scan(projected, state, keep.flip(1) if reverse else keep)
        return (outputs.flip(1) if reverse else outputs), state

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, impl={self.impl}, compile={self.compile}, "
                f"parallel={self.parallel}")


@functools.cache
def compile_problem() -> str | None:
    """Why torch.compile cannot run here (None: it can), from a tiny function's forward and backward."""
    try:
        probe = torch.compile(lambda a: torch.sigmoid(a) * a)
        probe(torch.ones(2, requires_grad=True)).sum().backward()
    except Exception as error:  # noqa: BLE001 - any failure means: run eagerly
        return first_line(error)[:200]
    return None


def _compiled_step(cell: Cell, method: str = "step") -> Callable:
    """cell.step (or another method, "scan") through torch.compile; if that fails at the first
    call, one line and eager calls."""
    eager = getattr(cell, method)
    compiled = torch.compile(eager)
    chosen: list[Callable] = []

    def step(*args):
        if not chosen:
            try:
                out = compiled(*args)
                chosen.append(compiled)
                return out
            except Exception as error:  # noqa: BLE001
                log.warning("torch.compile failed (%s); the cell %s runs eagerly", first_line(error)[:200], method)
                chosen.append(eager)
        return chosen[0](*args)

    return step


def _where(real: torch.Tensor, new: State, old: State) -> State:
    """`new` where `real` [B, 1] is true, else `old`, for a state or each part of a pair."""
    if isinstance(new, tuple):
        return tuple(torch.where(real, n, o) for n, o in zip(new, old))
    return torch.where(real, new, old)


def _pick(state: State, index: int) -> State:
    if isinstance(state, tuple):
        return tuple(part[index] for part in state)
    return state[index]


def copy_torch_weights(fused: nn.RNNBase, layer: Recurrent) -> None:
    """Copy the weights of torch's nn.RNN / nn.GRU / nn.LSTM into a `Recurrent` of its twin cells
    (TorchRNNCell, TorchGRUCell, TorchLSTMCell) of the same sizes."""
    if len(layer.cells) != fused.num_layers * (2 if fused.bidirectional else 1):
        raise ValueError("the fused layer and the cell layer differ in layers or directions")
    with torch.no_grad():
        for index, cell in enumerate(layer.cells):
            layer_index, direction = divmod(index, layer.directions)
            suffix = f"l{layer_index}" + ("_reverse" if direction else "")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(fused, f"{name}_{suffix}"))
