"""FLOPs of a model's forward pass: the closed-form formula, and a count of what actually ran.

Formula. The recurrent stack's FLOPs per time step come from `grubench.models.counting` (the
model zoo's closed forms: 2 G H (F + H) for the matrix products, plus bias adds and the cell's
elementwise operations). Around it, per sequence of T steps:

    encoding    T * (2 F E + E)      a Linear(F, E) encoding (Embedding, one-hot, identity: 0)
    head        2 D*H K + K          once (last step) or T times (per-step tasks)

`matmul_only=True` keeps the matrix products alone (2 x multiply-adds), the part that torch's
`FlopCounterMode` counts, so the two can be compared exactly.

A training step (forward + backward) is counted as 3 x the forward: each forward product has
two backward products of its size (the gradients for its input and for its weight).

Count. `counted_flops` runs the model on the CPU in fp32 under `FlopCounterMode` with oneDNN
off (so torch's CPU LSTM runs as the products it is made of) for one sequence of 1 and of 2
steps, and extrapolates F(B, T) = B * (F(1) + (T - 1) * (F(2) - F(1))): exact for any model
whose work is the same at every step. It counts matrix products only. It is the fallback for a
recurrent layer the formula does not know, and the tests' cross-check of the formula.

`forward_flops` is the one function the bench reads FLOPs from.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from grubench.models import counting


def formula_flops(model: nn.Module, batch: int, seq_len: int, matmul_only: bool = False) -> float | None:
    """Forward FLOPs of a SequenceModel by the formula above, or None if `grubench.models.counting`
    has no formula for its recurrent layer."""
    try:
        structure = counting.structure(model.recurrent)
    except ValueError:
        return None
    per_step = counting.matmul_flops(structure) if matmul_only else counting.flops(structure)
    bias = 0 if matmul_only else 1
    if isinstance(model.encoding, nn.Linear):
        per_step += (2 * model.encoding.in_features + bias) * model.encoding.out_features
    head = (2 * model.head.in_features + bias) * model.head.out_features
    per_sequence = seq_len * per_step + (seq_len * head if model.task.per_step else head)
    return float(batch * per_sequence)


def counted_flops(model: nn.Module, batch: int, seq_len: int) -> float:
    """Forward matrix-product FLOPs counted on a CPU fp32 copy of the model (see the module doc)."""
    probe = copy.deepcopy(model).float().cpu().eval()
    task = probe.task
    counts = []
    for steps in (1, 2):
        if task.input_kind == "tokens":
            x = torch.zeros(1, steps, dtype=torch.long)
        else:
            x = torch.zeros(1, steps, task.input_size)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # oneDNN's TF32 notice
            with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
                probe(x)
        counts.append(counter.get_total_flops())
    one, two = counts
    return float(batch * (one + (seq_len - 1) * (two - one)))


def forward_flops(model: nn.Module, batch: int, seq_len: int) -> tuple[float, str]:
    """(forward FLOPs for a batch of `batch` sequences of `seq_len` steps, "formula" or "counted")."""
    flops = formula_flops(model, batch, seq_len)
    if flops is not None:
        return flops, "formula"
    return counted_flops(model, batch, seq_len), "counted"


def train_flops(forward: float) -> float:
    """FLOPs of a training step (forward + backward), by the 3 x forward convention."""
    return 3.0 * forward
