"""Gradient flow through time (claim C2): how the gradient of the loss reaches each step t.

What is measured. For a batch (x, y) of the task and its loss L (at the end of the sequence, or
over every step for per-step tasks), u_t the encoded input the recurrent layer receives at step t
and s_t the whole state that step t hands on (to step t + 1, and h_t to the head), t = 1..T, write
L = F_t(s_t) for the loss as a function of that state: the rest of the sequence run from it. Three
norms per position t (Frobenius norms over the batch, the units and, for a stack, every layer):

    g_x(t)     = ||dL/du_t||         the same quantity for every architecture
    g_state(t) = ||dF_t/ds_t||       s_t = h_t; for the LSTM family s_t = (h_t, c_t), two inputs
                                     of F_t, and g_state = sqrt(||dF_t/dh_t||^2 + ||dF_t/dc_t||^2)
    g_c(t)     = ||dF_t/dc_t||       cells with a separate cell state (torch's LSTM, the LSTM
                                     cells and their ablations); JANET's only state is its cell,
                                     c_t = h_t, so there g_c = g_state

Every derivative is total, through every later path from step t to the loss (later states and
outputs), not only through the output at step t. For the LSTM, dF_t/dc_t is the path the claim
is about, c_{t+1} = f_{t+1} c_t + i_{t+1} c~_{t+1} and on (the constant error carousel), which
dL/dh_t with c_t held fixed leaves out; since h_t is an input of F_t of its own, the path
c_t -> h_t is in dF_t/dh_t, not counted again, and at t = T, where nothing reads c_T but the
h_T it made, g_c(T) = 0 (left out of the fit, below).

Summary. For each quantity, the slope of log10 g(t) against the lag T - t, fitted by least
squares over the measured positions (log10 per step; over the whole length the change is
slope x (T - 1) decades):

    slope < -TOL   vanishing     the gradient shrinks with the distance from the loss
    slope > +TOL   exploding     it grows
    otherwise      flat
    undefined      fewer than two measured positions with a finite, non-zero norm

Positions whose norm is 0 (underflow beyond float64) or not finite are left out of the fit.
TOL = 1e-3 log10 per step: a slope within it changes the gradient by less than a factor of 10
over 1,000 steps, the longest sequences the studies measure, so "flat" means less than a decade
over any studied length; the float64 measurement's own error is many orders below that.

How, for any unidirectional layer that takes an initial state (torch's fused layers, the cell
loops, the minimal scans, stacks of any of them): the layer runs one step at a time,

    _, s_t = layer(u_t, s_{t-1})       for t = 1..T, s_0 = None (zeros); s_t copied

and the output sequence the head reads is built from the states themselves (h_t of the top
layer, which is the layer's output at t), so that every path from step t to the loss passes
through the copy s_t, the input of the rest of the sequence (what the former method made a leaf
and ran the rest from, once per t). One backward pass, torch.autograd.grad(L, [u, s_1 .. s_T]),
then gives dL/du_t and dF_t/ds_t for every t at once: O(T) steps. The step-by-step outputs
are checked against one run of the whole sequence (a layer whose state is not its output is
refused). For a stack s_t is every layer's state at step t ([L, B, H], and c the same).
Bidirectional layers are refused (a backward direction has no "rest of the sequence"), and so
are batches whose padding mask pads (variable lengths): every sequence must have length T.

The measurement runs in float64 on a copy of the model (so that a gradient that vanishes over
1,000 steps is still a number), in eval mode (no dropout), with autocast off, whatever the
training precision; the model itself is not changed. `max_positions` reports an evenly spaced
subset of the steps (always t = 1 and t = T) on long sequences, which keeps the files small.
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
from grubench.models.cells import JANETCell
from grubench.models.sequence import SequenceModel
from grubench.task import loss_and_metric_inputs

TOL = 1e-3  # log10 per step: |slope| below it is "flat" (see the module docstring)
QUANTITIES = ("x", "state", "c")
LABELS = {"x": "||dL/dx_t||", "state": "||dL/ds_t|| (whole state)", "c": "||dL/dc_t||"}


def fit_slope(steps: list[int], norms: list[float]) -> float:
    """Least-squares slope of log10(norm) against the lag T - t (log10 per step); NaN if fewer
    than two positions have a finite, non-zero norm."""
    points = [(t, math.log10(n)) for t, n in zip(steps, norms) if n > 0 and math.isfinite(n)]
    if len(points) < 2:
        return math.nan
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    covariance = sum((t - mean_t) * (y - mean_y) for t, y in points)
    variance = sum((t - mean_t) ** 2 for t, _ in points)
    return -covariance / variance  # the lag runs against t


def classify(slope: float, tol: float = TOL) -> str:
    """vanishing (slope < -tol), exploding (slope > tol), flat, or undefined (NaN)."""
    if math.isnan(slope):
        return "undefined"
    if slope < -tol:
        return "vanishing"
    if slope > tol:
        return "exploding"
    return "flat"


@dataclass
class FlowCurve:
    """One quantity's norms at the measured positions t (1-based) of one model at one stage."""

    model: str
    stage: str
    steps: list[int] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)
    quantity: str = "state"

    @property
    def slope(self) -> float:
        """log10 per step against the lag (`fit_slope`)."""
        return fit_slope(self.steps, self.norms)

    @property
    def kind(self) -> str:
        """vanishing, exploding, flat or undefined (`classify`)."""
        return classify(self.slope)


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


def _parts(state) -> tuple[torch.Tensor, ...]:
    """A layer's state as a tuple: (h,) or (h, c)."""
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def _norm(grads: list[torch.Tensor | None]) -> float:
    """Frobenius norm over several gradients; None (no path to the loss) counts as zero."""
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))


def _cell_is_state(layer: nn.Module) -> bool:
    """Whether the layer's single state is a cell state (JANET: c_t = h_t)."""
    cells = getattr(layer, "cells", None)
    return cells is not None and isinstance(cells[0], JANETCell)


def default_positions(seq_len: int, max_positions: int | None) -> list[int]:
    """Every step 1..T, or `max_positions` of them evenly spaced, always with 1 and T."""
    if max_positions is None or seq_len <= max_positions:
        return list(range(1, seq_len + 1))
    if max_positions < 2:
        raise ValueError(f"max_positions must be at least 2, got {max_positions}")
    spaced = torch.linspace(1, seq_len, max_positions).round().long().tolist()
    return sorted(set(spaced))


def gradient_flow(model: SequenceModel, batch, stage: str = "step0", positions: list[int] | None = None,
                  max_positions: int | None = 128, dtype: torch.dtype = torch.float64) -> dict[str, FlowCurve]:
    """g_x, g_state and (for cells with a cell state) g_c of `model` on `batch` = (x, y[, mask]),
    as the module docstring defines them: {"x": curve, "state": curve[, "c": curve]}.

    The model is not changed: the measurement runs on a copy in `dtype`. The loss is the one the
    training task computes (`task.loss_and_metric_inputs`) for the model's task.
    """
    if getattr(model.recurrent, "bidirectional", False):
        raise ValueError("gradient flow through time is defined for unidirectional layers only")
    x, y, *rest = batch
    if rest and not bool(rest[0].all()):
        raise ValueError("gradient flow: this batch pads sequences of different lengths (a padding mask); "
                         "the measurement needs every sequence to have the full length")
    seq_len = x.shape[1]
    positions = sorted(positions or default_positions(seq_len, max_positions))
    if positions[0] < 1 or positions[-1] > seq_len:
        raise ValueError(f"positions must lie in 1..{seq_len}, got {positions[0]}..{positions[-1]}")
    probe = copy.deepcopy(model).to(dtype).eval()
    if x.is_floating_point():
        x = x.to(dtype)
    batch = (x, y)  # a mask without padding says nothing more
    layer = probe.recurrent
    # cuDNN's RNNs take no backward pass in eval mode (which the copy is in: no dropout), so on a
    # GPU the layers run torch's own kernels: the same function, measured in float64.
    with (torch.enable_grad(), torch.autocast(x.device.type, enabled=False),
          torch.backends.cudnn.flags(enabled=False)):
        with torch.no_grad():
            u = probe.encoding(x).to(dtype)  # a one-hot encoding gives fp32 whatever the model
            whole, _ = layer(u)
        u.requires_grad_(True)
        states, outputs, state = [], [], None
        for t in range(seq_len):
            _, state = layer(u[:, t : t + 1], state)
            # Copies: s_t is what step t hands on (to step t + 1, and h_t to the head). Were a
            # layer to return the very c_t its h_t was computed from (a cell's own step does),
            # dL/dc_t would count the path c_t -> h_t a second time.
            parts = tuple(part.clone() for part in _parts(state))
            state = parts if len(parts) > 1 else parts[0]
            states.append(parts)
            outputs.append(parts[0][-1])  # h_t of the top layer, taken from the state itself
        out = torch.stack(outputs, dim=1)
        if not torch.allclose(out, whole, rtol=1e-6, atol=1e-9):
            raise ValueError("the layer run one step at a time does not give its output: "
                             "cannot read h_t from its state")
        with _replaying(probe, out):
            loss, _ = loss_and_metric_inputs(probe, probe.task, batch)
        flat = [part for parts in states for part in parts]
        grad_u, *grads = torch.autograd.grad(loss, [u, *flat], allow_unused=True)
    width = len(states[0])
    per_step = [grads[i * width : (i + 1) * width] for i in range(seq_len)]
    norms = {"x": [_norm([grad_u[:, t - 1]]) for t in positions],
             "state": [_norm(per_step[t - 1]) for t in positions]}
    if width == 2:
        norms["c"] = [_norm(per_step[t - 1][1:]) for t in positions]
    elif _cell_is_state(layer):
        norms["c"] = list(norms["state"])
    name = getattr(model, "name", type(model).__name__)
    return {q: FlowCurve(model=name, stage=stage, steps=list(positions), norms=n, quantity=q) for q, n in norms.items()}


def write_csv(curves: list[FlowCurve], path: Path) -> None:
    """Columns: model, stage, quantity, t, norm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "stage", "quantity", "t", "norm"])
        for curve in curves:
            writer.writerows([curve.model, curve.stage, curve.quantity, t, n] for t, n in zip(curve.steps, curve.norms))


def plot(curves: list[FlowCurve], path: Path, title: str = "gradient flow through time") -> None:
    """One panel per quantity, one line per model and stage: the norm against the lag T - t on a
    log scale (a vanishing gradient falls to the right), slope and class in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = [q for q in QUANTITIES if any(c.quantity == q for c in curves)]
    lines = list(dict.fromkeys((c.model, c.stage) for c in curves))  # one colour each, in every panel
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(quantities), figsize=(5.2 * len(quantities), 4.2), squeeze=False)
    for ax, quantity in zip(axes[0], quantities):
        for curve in (c for c in curves if c.quantity == quantity):
            last = curve.steps[-1]
            norms = [n if n > 0 else math.nan for n in curve.norms]
            ax.semilogy([last - t for t in curve.steps], norms,
                        color=colours[lines.index((curve.model, curve.stage)) % len(colours)],
                        label=f"{curve.model} {curve.stage}: {curve.slope:+.4f}/step ({curve.kind})")
        ax.set_xlabel("lag T - t (steps before the end)")
        ax.set_title(LABELS[quantity])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(models: list[str], overrides: list[str] = (), batch_size: int = 64,
            max_positions: int | None = 128) -> list[FlowCurve]:
    """Gradient flow at initialisation (stage step0) of each model in `models` (conf/model names),
    on the first validation batch of the data set the overrides choose (default config: adding);
    the curves of every model and quantity, in that order."""
    curves = []
    for name in models:
        cfg = model_config(name, list(overrides))
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule = build(cfg.dataset, "dataset")
        datamodule.setup()
        batch = tuple(t[:batch_size] for t in next(iter(datamodule.val_dataloader())))
        model = build(cfg.model, "model", task=datamodule.spec)
        for curve in gradient_flow(model, batch, stage="step0", max_positions=max_positions).values():
            curve.model = name
            curves.append(curve)
    return curves
