"""The gradient-flow measurement as a training callback (`gradient_flow=true` on any run)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from grubench.gradflow.measure import FlowCurve, finite, gradient_flow, plot, write_csv


class GradientFlow(pl.Callback):
    """Measures the gradient flow at the start of training and at its end, on a fixed batch.

    The batch is the first `batch_size` sequences of the first validation batch. Logs to the
    run's MLflow logger: metrics `grad/decay_log10` (at step 0, then at the last step),
    `grad/decay_log10_init`, `grad/decay_log10_trained`; artifacts gradient_flow/curves.csv and
    gradient_flow/gradient_flow.png (both stages on one plot). Files go to
    <default_root_dir>/gradient_flow as well.
    """

    def __init__(self, batch_size: int = 64, max_positions: int | None = 128):
        self.batch_size = batch_size
        self.max_positions = max_positions
        self.batch = None
        self.curves: list[FlowCurve] = []

    def _first_batch(self, trainer: pl.Trainer, device: torch.device):
        source = trainer.datamodule
        loader = source.val_dataloader() if source is not None else trainer.val_dataloaders
        if len(loader) == 0:  # no validation set (val_size=0): the training set's first batch
            loader = source.train_dataloader() if source is not None else trainer.train_dataloader
        first = next(iter(loader))
        return tuple(t[: self.batch_size].to(device) for t in first)

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> FlowCurve:
        if self.batch is None:
            self.batch = self._first_batch(trainer, pl_module.device)
        curve = gradient_flow(pl_module.model, self.batch, stage=stage, max_positions=self.max_positions)
        self.curves.append(curve)
        for logger in trainer.loggers:
            logger.log_metrics({"grad/decay_log10": finite(curve.decay_log10),
                                f"grad/decay_log10_{stage}": finite(curve.decay_log10)}, step=trainer.global_step)
        return curve

    def on_train_start(self, trainer, pl_module):
        self.curves = []
        self._measure(trainer, pl_module, "init")

    def on_train_end(self, trainer, pl_module):
        self._measure(trainer, pl_module, "trained")
        folder = Path(trainer.default_root_dir) / "gradient_flow"
        write_csv(self.curves, folder / "curves.csv")
        plot(self.curves, folder / "gradient_flow.png", title=f"gradient flow: {self.curves[0].model}")
        for logger in trainer.loggers:
            client, run_id = getattr(logger, "experiment", None), getattr(logger, "run_id", None)
            if run_id is not None and hasattr(client, "log_artifact"):
                for name in ("curves.csv", "gradient_flow.png"):
                    client.log_artifact(run_id, str(folder / name), "gradient_flow")
