"""What a run shows while it trains: Lightning's progress bar on a terminal, else one plain line
per epoch (a file or a pipe gets no carriage returns and no cursor movements).

    epoch 3/10: train/loss 0.0213, val/mse 0.0198 (best 0.0198); 4.1 s
"""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

# Redrawing the progress bar every step costs about 0.25 ms a step (python -m grubench.bench.overhead).
REFRESH_STEPS = 20


def progress_callback(monitor: str, mode: str) -> pl.Callback:
    """The progress bar when stdout is a terminal, else `EpochLines`."""
    if sys.stdout.isatty():
        return TQDMProgressBar(refresh_rate=REFRESH_STEPS)
    return EpochLines(monitor, mode)


class EpochLines(pl.Callback):
    """One line per finished epoch: the epoch, the training loss, the monitored validation metric
    (and the best so far), the epoch's wall time."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.start = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # Validation has run; callbacks come before the module's own hook, which logs and resets
        # the epoch's training loss: read it from the module's accumulator.
        parts = []
        if getattr(pl_module, "train_loss", None) is not None:
            parts.append(f"train/loss {float(pl_module.train_loss.compute()):.4g}")
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            value = float(value)
            if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
                self.best = value
            parts.append(f"{self.monitor} {value:.4g} (best {self.best:.4g})")
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}{epochs}: {', '.join(parts)}; "
              f"{time.perf_counter() - self.start:.1f} s", flush=True)
