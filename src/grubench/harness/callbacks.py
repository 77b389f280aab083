"""Lightning callbacks that measure a run and guard it: speed, memory, a finite loss.

Neither makes the host wait for the GPU during an epoch. On a GPU, kernels run behind the
Python code that launches them; a read of a GPU value on the host (`.item()`, `bool(tensor)`,
`torch.cuda.synchronize`) stops the host until the GPU has caught up, and for the small
recurrent models here that wait can cost more than the step's kernels. So step times come from
CUDA events read once per epoch, and the finite-loss flag is kept on the device and read every
`FiniteLoss.check_every` steps and before any checkpoint is written. On the CPU nothing runs
behind the host: times are wall-clock times and the loss is checked at once.
"""

from __future__ import annotations

import math
import resource
import statistics
import time

import pytorch_lightning as pl
import torch

from grubench.errors import Diverged
from grubench.levels import first_solved


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA peak allocated on a GPU, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Throughput(pl.Callback):
    """Per training epoch, logs

        speed/step_ms              median time of one optimiser step (forward, backward, update)
        speed/train_samples_per_s  training samples / summed step time (validation excluded)
        speed/epoch_s              wall time of the epoch, validation included
        mem/peak_mb                peak memory so far (see `peak_memory_mb`)

    On a GPU a step's time is the time between two CUDA events recorded on the device's stream
    at the step's start and end, read once at the end of the epoch (one wait per epoch, none
    per step); on the CPU it is the wall-clock time of the step.
    """

    def __init__(self):
        self.step_seconds: list[float] = []
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.samples = 0
        self.epoch_start = 0.0
        self.step_start: float | torch.cuda.Event = 0.0
        self.summary: dict[str, float] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.step_seconds, self.events, self.samples = [], [], 0
        self.epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.device.type == "cuda":
            self.step_start = torch.cuda.Event(enable_timing=True)
            self.step_start.record()
        else:
            self.step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if isinstance(self.step_start, torch.cuda.Event):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((self.step_start, end))
        else:
            self.step_seconds.append(time.perf_counter() - self.step_start)
        self.samples += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module):
        if self.events:  # the epoch's one wait for the GPU
            self.events[-1][1].synchronize()
            self.step_seconds = [start.elapsed_time(end) / 1000 for start, end in self.events]
            self.events = []
        if not self.step_seconds:
            return
        self.summary = {
            "speed/step_ms": 1000 * statistics.median(self.step_seconds),
            "speed/train_samples_per_s": self.samples / sum(self.step_seconds),
            "speed/epoch_s": time.perf_counter() - self.epoch_start,
            "mem/peak_mb": peak_memory_mb(pl_module.device),
        }
        for logger in trainer.loggers:
            logger.log_metrics(self.summary, step=trainer.global_step)


class FiniteLoss(pl.Callback):
    """Stops training with `Diverged` when a training loss is NaN or infinite, so that a
    diverging run ends FAILED with a clear message (the epoch, step and value of the first bad
    loss) instead of training on garbage.

    Its promise: no update made from a bad loss reaches a checkpoint. On the CPU (or with
    `defer=False`) the loss is checked before its backward pass, so the bad loss never updates
    the weights. On a GPU (`defer=True`) the check runs on the device: the step index and value
    of the first bad loss are kept there, and read on the host every `check_every` steps, at the
    end of every epoch and before any checkpoint is saved (`on_save_checkpoint` raises, so the
    file is never written). Training may go on a few steps past the bad loss, but nothing it
    does after it is kept: the checkpoints written so far (best.ckpt, last.ckpt) are the last
    good ones.
    """

    def __init__(self, check_every: int = 100, defer: bool | None = None):
        self.check_every = check_every
        self.defer = defer                 # None: defer on a GPU only
        self.steps: list[tuple[int, int]] = []   # (epoch, global step) of each unread step
        self.first_bad: torch.Tensor | None = None   # on the device: index into `steps`, -1 if none
        self.bad_value: torch.Tensor | None = None
        self.index: torch.Tensor | None = None

    def on_before_backward(self, trainer, pl_module, loss):
        loss = loss.detach()
        defer = self.defer if self.defer is not None else loss.device.type == "cuda"
        if not defer:
            if not torch.isfinite(loss).all():
                raise self.diverged(loss.item(), trainer.current_epoch, trainer.global_step)
            return
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self.bad_value = torch.zeros((), dtype=torch.float32, device=loss.device)
            self.index = torch.zeros((), dtype=torch.long, device=loss.device)
        newly_bad = ~torch.isfinite(loss).all() & (self.first_bad < 0)
        self.first_bad = torch.where(newly_bad, self.index, self.first_bad)
        self.bad_value = torch.where(newly_bad, loss.float(), self.bad_value)
        self.index += 1
        self.steps.append((trainer.current_epoch, trainer.global_step))
        if len(self.steps) >= self.check_every:
            self.check()

    def check(self) -> None:
        """Read the device's flag (one wait for the GPU); raise `Diverged` if a loss was bad."""
        if self.first_bad is None or not self.steps:
            return
        first = int(self.first_bad)
        if first >= 0:
            epoch, step = self.steps[first]
            raise self.diverged(float(self.bad_value), epoch, step)
        self.steps.clear()
        self.index.zero_()

    def on_train_epoch_end(self, trainer, pl_module):
        self.check()

    def on_validation_start(self, trainer, pl_module):
        self.check()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.check()

    @staticmethod
    def diverged(value: float, epoch: int, step: int) -> Diverged:
        return Diverged(f"training loss became {value} at epoch {epoch}, step {step}; "
                        "lower optim.lr or set trainer.gradient_clip_val")


class SolveStep(pl.Callback):
    """Learning speed: when a run first reached its task's solved level (`grubench.levels`).

    After each validation it notes (global step, validation score); when training ends it logs

        solve/step     the first step whose validation score is solved (only when one is)
        solve/solved   1 when the run reached the solved level, 0 when it never did
        train/steps    the optimiser steps trained, so that "never solved" says in how many
        train/budget_steps   the steps the run was given (logged when training starts from step
                       0, so that a run that fails has it too: the report censors unsolved
                       runs there; a resumed run has it from its first start)

    The solved level is absolute for tasks with a known ceiling (adding: MSE <= 0.01, copy:
    recall accuracy >= 0.99) and relative to the run's own best validation score elsewhere, so
    it can only be decided at the end. A run without validation logs train/steps only. A resumed
    run counts from the validations it saw after resuming.
    """

    def __init__(self, dataset: str, metric: str, chance: float = math.nan):
        self.dataset, self.metric, self.chance = dataset, metric, chance
        self.history: list[tuple[int, float]] = []

    def on_validation_end(self, trainer, pl_module):
        # on_validation_end, not on_validation_epoch_end: only here are the epoch's metrics in
        # callback_metrics (ModelCheckpoint reads them at the same point)
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(f"val/{self.metric}")
        if value is not None:
            self.history.append((trainer.global_step, float(value)))

    def on_train_start(self, trainer, pl_module):
        if trainer.global_step:
            return
        for logger in trainer.loggers:
            logger.log_metrics({"train/budget_steps": float(trainer.estimated_stepping_batches)},
                               step=0)

    def on_train_end(self, trainer, pl_module):
        metrics = {"train/steps": float(trainer.global_step)}
        if self.history:
            step = first_solved(self.history, self.dataset, self.metric, self.chance)
            metrics["solve/solved"] = float(step is not None)
            if step is not None:
                metrics["solve/step"] = float(step)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
