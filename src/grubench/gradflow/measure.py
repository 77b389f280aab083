"""Gradient flow through time (claim C2): the norm of dL/dh_t for every step t.

What is measured. For a batch (x, y) and the task's loss L, and h_t the hidden state after
step t (t = 1..T), the total derivative

    g_t = dL/dh_t        through every path from h_t to the loss: later states and outputs

whose norm ||g_t|| (Frobenius over the batch and the units) is the curve, and

    grad/decay_log10 = log10(||g_1|| / ||g_T||)

its summary: 0 when the gradient reaching the first step is as large as at the last one,
-k when it is 10^k times smaller (vanishing), +k when larger (exploding).

How, for any recurrent layer that takes an initial state (torch's fused layers, cell loops):
h_t is the final state of running x_1..x_t; then the rest of the sequence x_{t+1}..x_T is run
again from the initial state h_t, made a leaf that requires a gradient, the outputs of steps
1..t-1 are held as they were, the output of step t is h_t's top layer, and the gradient of L
with respect to that leaf is g_t exactly. (Hooking the output sequence of a fused layer would
give only the part of g_t that flows through out_t, not through h_{t+1}.) Cost: one run of the
T - t remaining steps per measured t, so O(T^2) steps for every t; `max_positions` measures an
evenly spaced subset (always t = 1 and t = T) on long sequences.

LSTM: the state is (h_t, c_t); c_t is held fixed and g_t is the derivative with respect to h_t
alone, the same quantity a cell loop's h_t.grad gives. Stacks: h_t is every layer's state at
step t, [L, B, H], and g_t its gradient over all layers. Bidirectional layers are refused (a
backward direction has no "rest of the sequence").

The measurement runs in float64 on a copy of the model (so that a gradient that vanishes over
1,000 steps is still a number), without autocast, in eval mode (no dropout), whatever the
training precision.
"""

from __future__ import annotations

import copy
import csv
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from grubench.config import build, model_config
from grubench.models.sequence import SequenceModel
from grubench.task import loss_and_metric_inputs


@dataclass
class FlowCurve:
    """||dL/dh_t|| at the measured steps t (1-based) of one model at one stage of training."""

    model: str
    stage: str
    steps: list[int] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)

    @property
    def decay_log10(self) -> float:
        """log10(||g_1|| / ||g_T||); -inf if g_1 is exactly 0, NaN if g_T is."""
        first, last = self.norms[0], self.norms[-1]
        if last == 0:
            return math.nan
        return math.log10(first / last) if first > 0 else -math.inf


class _Given(nn.Module):
    """Stands in for a recurrent layer: returns a given output sequence, whatever the input."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out

    def forward(self, x, hx=None):
        return self.out, None


@contextmanager
def _replaying(model: SequenceModel, out: torch.Tensor):
    layer = model.recurrent
    model.recurrent = _Given(out)
    try:
        yield
    finally:
        model.recurrent = layer


def _split(state) -> tuple[torch.Tensor, tuple]:
    """(h, rest) of a layer's state: a tensor h, or a tuple (h, c, ...)."""
    if isinstance(state, torch.Tensor):
        return state, ()
    return state[0], tuple(state[1:])


def _join(h: torch.Tensor, rest: tuple):
    return (h, *rest) if rest else h


def default_positions(seq_len: int, max_positions: int | None) -> list[int]:
    """Every step 1..T, or `max_positions` of them evenly spaced, always with 1 and T."""
    if max_positions is None or seq_len <= max_positions:
        return list(range(1, seq_len + 1))
    if max_positions < 2:
        raise ValueError(f"max_positions must be at least 2, got {max_positions}")
    spaced = torch.linspace(1, seq_len, max_positions).round().long().tolist()
    return sorted(set(spaced))


def gradient_flow(model: SequenceModel, batch, stage: str = "init", positions: list[int] | None = None,
                  max_positions: int | None = 128, dtype: torch.dtype = torch.float64) -> FlowCurve:
    """Measure ||dL/dh_t|| (see the module docstring) of `model` on `batch` = (x, y[, mask]).

    The model is not changed: the measurement runs on a copy in `dtype`. The loss is the one the
    training task computes (`task.loss_and_metric_inputs`) for the model's task.
    """
    if getattr(model.recurrent, "bidirectional", False):
        raise ValueError("gradient flow through time is defined for unidirectional layers only")
    probe = copy.deepcopy(model).to(dtype).eval()
    x, *rest = batch
    if x.is_floating_point():
        x = x.to(dtype)
    batch = (x, *rest)
    seq_len = x.shape[1]
    positions = sorted(positions or default_positions(seq_len, max_positions))
    if positions[0] < 1 or positions[-1] > seq_len:
        raise ValueError(f"positions must lie in 1..{seq_len}, got {positions[0]}..{positions[-1]}")
    layer = probe.recurrent
    with torch.no_grad():
        u = probe.encoding(x).to(dtype)  # a one-hot encoding gives fp32 whatever the model
        out_all, _ = layer(u)
        states, state, done = {}, None, 0
        for t in positions:  # the state after step t, running on from the last measured step
            _, state = layer(u[:, done:t], state)
            states[t], done = state, t
        h_last, _ = _split(states[positions[-1]])
        if not torch.allclose(h_last[-1], out_all[:, positions[-1] - 1], rtol=1e-6, atol=1e-9):
            raise ValueError("the layer's final state does not match its output: cannot read h_t from its state")
    norms = []
    for t in positions:
        h_t, others = _split(states[t])
        h = h_t.detach().clone().requires_grad_(True)
        parts = [out_all[:, : t - 1], h[-1].unsqueeze(1)]
        if t < seq_len:
            out_rest, _ = layer(u[:, t:], _join(h, tuple(o.detach() for o in others)))
            parts.append(out_rest)
        with _replaying(probe, torch.cat(parts, dim=1)):
            loss, _ = loss_and_metric_inputs(probe, probe.task, batch)
        (grad,) = torch.autograd.grad(loss, h)
        norms.append(float(grad.norm()))
    return FlowCurve(model=getattr(model, "name", type(model).__name__), stage=stage, steps=positions, norms=norms)


def write_csv(curves: list[FlowCurve], path: Path) -> None:
    """Columns: model, stage, t, norm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "stage", "t", "norm"])
        for curve in curves:
            writer.writerows([curve.model, curve.stage, t, n] for t, n in zip(curve.steps, curve.norms))


def plot(curves: list[FlowCurve], path: Path, title: str = "gradient flow through time") -> None:
    """One line per curve: ||dL/dh_t|| against t on a log scale, decay in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for curve in curves:
        norms = [n if n > 0 else math.nan for n in curve.norms]
        ax.semilogy(curve.steps, norms, label=f"{curve.model} ({curve.stage}): decay {curve.decay_log10:+.2f}")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def finite(value: float) -> float:
    """MLflow stores -inf as -1.8e308; a vanishing beyond float64 is logged as -308 instead."""
    return max(value, -308.0) if not math.isnan(value) else value


def compare(models: list[str], overrides: list[str] = (), batch_size: int = 64,
            max_positions: int | None = 128) -> list[FlowCurve]:
    """Gradient flow at initialisation of each model in `models` (conf/model names), on the first
    validation batch of the data set the overrides choose (default config: adding)."""
    curves = []
    for name in models:
        cfg = model_config(name, list(overrides))
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule = build(cfg.dataset, "dataset")
        datamodule.setup()
        batch = tuple(t[:batch_size] for t in next(iter(datamodule.val_dataloader())))
        model = build(cfg.model, "model", task=datamodule.spec)
        curve = gradient_flow(model, batch, stage="init", max_positions=max_positions)
        curve.model = name
        curves.append(curve)
    return curves
