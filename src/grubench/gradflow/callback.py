"""The gradient-flow measurement as a training callback (`gradient_flow=[0,1000]` on any run)."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
import torch

from grubench.gradflow.measure import FlowCurve, gradient_flow, plot, write_csv


def metric_name(quantity: str, step: int) -> str:
    """`grad/<quantity>_slope_step<step>` (MLflow names allow no `@`)."""
    return f"grad/{quantity}_slope_step{step}"


def class_tag(quantity: str, step: int) -> str:
    """`grad/<quantity>_class_step<step>`: vanishing, exploding, flat or undefined."""
    return f"grad/{quantity}_class_step{step}"


class GradientFlow(pl.Callback):
    """Measures the gradient flow (`grubench.gradflow.measure`) at fixed optimiser steps.

    Step 0 is at initialisation, before the first update; step s > 0 is right after the s-th
    update. Every model measured with the same `steps` is measured after the same number of
    updates. A run that ends (early stopping, max_steps) before a listed step has no measurement
    for it: it is named in the tag `grad/missing_steps`, never measured at another step instead.

    The batch is the first `batch_size` sequences of the first validation batch (of the first
    training batch where there is no validation set), the same at every step. Logs to the run's
    MLflow logger, for each measured step s and quantity q in x, state, c (c only for cells with a
    cell state): the metric `grad/<q>_slope_step<s>` (log10 per step against the lag; logged at
    step s) and the tag `grad/<q>_class_step<s>`; at the end the tags `grad/steps` (the listed
    steps) and `grad/missing_steps` (those without a measurement, or "none"), and the artifacts
    gradient_flow/curves.csv and gradient_flow/gradient_flow.png (every quantity and step), also
    written to <default_root_dir>/gradient_flow. The measurements are kept in the checkpoint, so a
    resumed run still has the ones made before it stopped.
    """

    def __init__(self, steps: list[int], batch_size: int = 64, max_positions: int | None = 128):
        self.steps = sorted({int(s) for s in steps})
        self.batch_size = batch_size
        self.max_positions = max_positions
        self.batch = None
        self.measured: dict[int, list[FlowCurve]] = {}

    def _first_batch(self, trainer: pl.Trainer, device: torch.device):
        source = trainer.datamodule
        loader = source.val_dataloader() if source is not None else trainer.val_dataloaders
        if len(loader) == 0:  # no validation set (val_size=0): the training set's first batch
            loader = source.train_dataloader() if source is not None else trainer.train_dataloader
        first = next(iter(loader))
        return tuple(t[: self.batch_size].to(device) for t in first)

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if self.batch is None:
            self.batch = self._first_batch(trainer, pl_module.device)
        curves = gradient_flow(pl_module.model, self.batch, stage=f"step{step}", max_positions=self.max_positions)
        self.measured[step] = list(curves.values())
        metrics = {metric_name(c.quantity, step): c.slope for c in curves.values()}
        tags = {class_tag(c.quantity, step): c.kind for c in curves.values()}
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)}, step=step)
        _set_tags(trainer, tags)

    def on_train_start(self, trainer, pl_module):
        if 0 in self.steps and 0 not in self.measured and trainer.global_step == 0:
            self._measure(trainer, pl_module, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # updates made so far
        if step in self.steps and step not in self.measured:
            self._measure(trainer, pl_module, step)

    def on_train_end(self, trainer, pl_module):
        missing = [s for s in self.steps if s not in self.measured]
        _set_tags(trainer, {"grad/steps": ",".join(map(str, self.steps)),
                            "grad/missing_steps": ",".join(map(str, missing)) or "none"})
        curves = [c for step in sorted(self.measured) for c in self.measured[step]]
        if not curves:
            return
        folder = Path(trainer.default_root_dir) / "gradient_flow"
        write_csv(curves, folder / "curves.csv")
        plot(curves, folder / "gradient_flow.png", title=f"gradient flow: {curves[0].model}")
        for client, run_id in _runs(trainer):
            for name in ("curves.csv", "gradient_flow.png"):
                client.log_artifact(run_id, str(folder / name), "gradient_flow")

    def state_dict(self) -> dict:
        return {"measured": {step: [asdict(c) for c in curves] for step, curves in self.measured.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.measured = {int(step): [FlowCurve(**c) for c in curves]
                         for step, curves in state_dict.get("measured", {}).items()}


def _runs(trainer: pl.Trainer):
    """(MLflow client, run id) of each of the trainer's MLflow loggers."""
    for logger in trainer.loggers:
        client, run_id = getattr(logger, "experiment", None), getattr(logger, "run_id", None)
        if run_id is not None and hasattr(client, "set_tag"):
            yield client, run_id


def _set_tags(trainer: pl.Trainer, tags: dict[str, str]) -> None:
    if trainer.is_global_zero:
        for client, run_id in _runs(trainer):
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
