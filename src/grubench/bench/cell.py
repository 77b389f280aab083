"""Measure one benchmark cell: a model at one (device, precision, batch B, length T, hidden H).

What is timed, on random inputs x [B, T, F] and targets y [B]:

    fwd     model(x) under torch.no_grad() (inference), in the cell's precision
    train   zero the gradients, model(x), MSE loss, loss.backward() (no optimiser step: it costs
            O(parameters), not O(B T), and is the same for every sequence length)

Each is timed by torch.utils.benchmark.Timer (`time_call`): `warmup` untimed runs, then up to
`repeats` timed runs, each on its own, stopping early once `max_seconds` of timed runs have
passed (at least 3 are kept). The median is the cell's time, the interquartile range over the
median its spread.

Precision follows Lightning's names: "32-true" runs as built; "16-mixed" and "bf16-mixed" run
under torch.autocast with float16 / bfloat16, parameters staying fp32. Whatever the request, the
dtype of the recurrent layer's output is recorded as the dtype that ran: autocast may leave a
layer in fp32 (torch's CPU GRU) or run it in another low precision.

Memory: `saved_mb`, the tensors autograd keeps for the backward pass (activations, workspaces,
low-precision weight copies; parameters excluded; each storage once), on any device; and on a GPU
`peak_mb`, the CUDA allocator's peak during one training step (parameters and inputs included;
the grid counts it above what was allocated before the cell's model was built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import benchmark

AUTOCAST = {"32-true": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


class Skip(Exception):
    """The cell cannot run here; the message says why."""


@dataclass
class Timing:
    """One call's time over `repeats` timed runs: median, fastest, and (Q3 - Q1) / median in %."""

    median_ms: float
    min_ms: float
    iqr_pct: float
    repeats: int


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], None], warmup: int, repeats: int, max_seconds: float) -> Timing:
    """Time `fn()` with torch.utils.benchmark.Timer; returns the median, fastest and IQR/median
    (quartiles interpolated linearly) of the timed runs, and how many there were.

    How the settings map onto the Timer:
        warmup       `fn()` runs `warmup` times untimed before the first timed run;
        repeats      each timed run is one `Timer.timeit(1)`, at most `repeats` of them. The Timer
                     runs `fn()` twice untimed before each (its own warm-up, which cannot be turned
                     off), so a measurement makes warmup + 3 x repeats calls, one in three timed;
        max_seconds  no new timed run starts once the timed runs add up to more than this, but
                     min(3, repeats) are always made.
    The Timer reads a wall clock after synchronising the (current) accelerator, so a GPU's queued
    work is inside the time; it runs with torch's current thread count (its own default is 1)."""
    for _ in range(warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    runs: list[benchmark.Measurement] = []
    while len(runs) < repeats:
        runs.append(timer.timeit(1))
        timed = sum(run.raw_times[0] for run in runs)  # seconds
        if timed > max_seconds and len(runs) >= min(3, repeats):
            break
    measured = benchmark.Measurement.merge(runs)[0]
    median = measured.median
    return Timing(1000 * median, 1000 * min(measured.times), 100 * measured.iqr / median if median else 0.0,
                  len(measured.times))


def autocast(device: torch.device, precision: str):
    """The autocast context of a precision (a disabled one for "32-true")."""
    if precision not in AUTOCAST:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST)}, got {precision!r}")
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def check_runnable(device: torch.device, precision: str) -> None:
    """Raise Skip when this device/precision pair cannot run in this process."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Skip("no CUDA device")
        if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            raise Skip("this GPU has no bfloat16")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise Skip("no MPS device")


def saved_tensor_mb(model: nn.Module, step: Callable[[], torch.Tensor]) -> float:
    """MiB of the distinct storages autograd saves for backward during `step()` (parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = step()
    del loss
    return sum(storages.values()) / 2**20


def measure(model: nn.Module, device: torch.device, precision: str, batch: int, seq_len: int,
            warmup: int, repeats: int, max_seconds: float, seed: int = 0) -> dict:
    """Time and size one cell; `model` is a SequenceModel with real-valued inputs, already on `device`.

    Returns fwd_ms, fwd_min_ms, fwd_iqr_pct, train_ms, train_min_ms, train_iqr_pct, repeats,
    dtype (what the recurrent layer ran in), saved_mb, peak_mb (NaN off a GPU), grad_finite.
    """
    check_runnable(device, precision)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq_len, model.task.input_size, generator=generator).to(device)
    y = torch.randn(batch, generator=generator).to(device)
    parameters = list(model.parameters())

    def forward():
        with torch.no_grad(), autocast(device, precision):
            model(x)

    def loss():
        with autocast(device, precision):
            return F.mse_loss(model(x).float(), y)

    def train_step():
        for p in parameters:
            p.grad = None
        loss().backward()

    model.train()
    train_step()
    dtype = getattr(model, "last_recurrent_dtype", None)
    grad_finite = all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)
    fwd = time_call(forward, warmup, repeats, max_seconds)
    train = time_call(train_step, warmup, repeats, max_seconds)
    saved = saved_tensor_mb(model, loss)
    peak = float("nan")
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    for p in parameters:
        p.grad = None
    return {
        "fwd_ms": fwd.median_ms, "fwd_min_ms": fwd.min_ms, "fwd_iqr_pct": fwd.iqr_pct,
        "train_ms": train.median_ms, "train_min_ms": train.min_ms, "train_iqr_pct": train.iqr_pct,
        "repeats": min(fwd.repeats, train.repeats),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else "unknown",
        "impl": getattr(model, "last_recurrent_impl", None) or "unknown",
        "saved_mb": saved, "peak_mb": peak, "grad_finite": grad_finite,
    }
