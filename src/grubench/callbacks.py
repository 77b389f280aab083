"""Lightning callbacks that measure a run: speed, memory and learning speed."""

from __future__ import annotations

import math
import resource
import statistics
import time

import pytorch_lightning as pl
import torch


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA peak allocated on a GPU, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Throughput(pl.Callback):
    """Per training epoch, logs

        speed/step_ms              median wall time of one optimiser step (forward, backward, update)
        speed/train_samples_per_s  training samples / summed step time (validation excluded)
        speed/epoch_s              wall time of the epoch, validation included
        mem/peak_mb                peak memory so far (see `peak_memory_mb`)

    On a GPU the step timer synchronises, so a step's time is its kernels' time, not its launch.
    """

    def __init__(self):
        self.step_seconds: list[float] = []
        self.samples = 0
        self.epoch_start = 0.0
        self.step_start = 0.0
        self.summary: dict[str, float] = {}

    def _sync(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module):
        self.step_seconds, self.samples = [], 0
        self.epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(pl_module)
        self.step_seconds.append(time.perf_counter() - self.step_start)
        self.samples += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module):
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


class Diverged(RuntimeError):
    """Training produced a loss that is not a finite number."""


class FiniteLoss(pl.Callback):
    """Stops training with `Diverged` as soon as a training loss is NaN or infinite, so that a
    diverging run ends FAILED with a clear message instead of training on garbage. The check
    comes before the backward pass, so the bad loss never updates the weights; the checkpoints
    written so far (best.ckpt, last.ckpt) are kept."""

    def on_before_backward(self, trainer, pl_module, loss):
        if not torch.isfinite(loss).all():
            raise Diverged(
                f"training loss became {loss.item()} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                "lower optim.lr or set trainer.gradient_clip_val"
            )


class SolveStep(pl.Callback):
    """Learning speed: when a run first reached its task's solved level (`grubench.levels`).

    After each validation it notes (global step, validation score); when training ends it logs

        solve/step     the first step whose validation score is solved (only when one is)
        solve/solved   1 when the run reached the solved level, 0 when it never did
        train/steps    the optimiser steps trained, so that "never solved" says in how many

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

    def on_train_end(self, trainer, pl_module):
        from grubench.levels import first_solved

        metrics = {"train/steps": float(trainer.global_step)}
        if self.history:
            step = first_solved(self.history, self.dataset, self.metric, self.chance)
            metrics["solve/solved"] = float(step is not None)
            if step is not None:
                metrics["solve/step"] = float(step)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
