"""The LightningModule: loss and metrics for the task's output kind, and the optimiser.

It is built from configs (the model's, the optimiser's and the data set's `TaskSpec`) and saves
them as its hyperparameters, so that a checkpoint describes itself:

    task = SequenceTask.load_from_checkpoint("checkpoints/best.ckpt")   # model rebuilt, weights in

| output kind             | loss                                   | metric (logged as <split>/<name>)  |
|-------------------------|----------------------------------------|------------------------------------|
| regression              | mean squared error                     | mse                                |
| classification          | cross-entropy                          | acc                                |
| per_step_classification | cross-entropy averaged over all steps  | acc (last N steps if the task says)|
| per_step_multilabel     | Bernoulli NLL summed over labels,      | nll (the same, per time step)      |
|                         | averaged over real steps               |                                    |

Every split logs `<split>/loss` and `<split>/<metric>` once per epoch. A batch with a mask
`(x, y, mask)` holds sequences of unequal length: the model gets their lengths (`mask.sum(1)`)
and reads each one's last real step, and the per-step losses and metrics count real steps only.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
import torchmetrics
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F

from grubench.config import build
from grubench.spec import TaskSpec


class SequenceTask(pl.LightningModule):
    """Trains the model its config describes on the task its data set describes.

    Args:
        model: the model config (a `grubench.models.SequenceModel` and its options, as composed
            from conf/model); built here with `task=spec`.
        optim: the optimiser config (conf/optim), built over the model's parameters when
            training starts.
        spec: the data set's `TaskSpec` (or its fields); it decides the loss and metrics.
    """

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any], spec: TaskSpec | Mapping[str, Any]):
        super().__init__()
        model, optim = plain(model), plain(optim)
        spec = spec if isinstance(spec, TaskSpec) else TaskSpec(**spec)
        self.save_hyperparameters({"model": model, "optim": optim, "spec": asdict(spec)})
        self.spec = spec
        self.model = build(OmegaConf.create(model), "model", task=spec)
        self.metrics = torch.nn.ModuleDict({f"{split}_metric": self._metric() for split in ("train", "val", "test")})
        # No metric may read a value back to the host in a training step: on a GPU that read waits
        # for the step's kernels and the next step cannot be queued behind them. torchmetrics'
        # aggregators check every update for NaN on the host unless nan_strategy="disable" (a
        # non-finite loss is FiniteLoss's to find); its classification metrics check their
        # inputs' values unless validate_args=False (the TaskSpec already fixes them).
        self.train_loss = torchmetrics.MeanMetric(nan_strategy="disable")

    def _metric(self) -> torchmetrics.Metric:
        kind = self.spec.output
        if kind == "regression":
            return torchmetrics.MeanSquaredError()
        if kind in ("classification", "per_step_classification"):
            return torchmetrics.classification.MulticlassAccuracy(self.spec.num_outputs, average="micro",
                                                                  validate_args=False)
        return torchmetrics.MeanMetric(nan_strategy="disable")  # per-step multi-label: NLL per real time step

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x) if lengths is None else self.model(x, lengths)

    def loss_and_metric_inputs(self, batch) -> tuple[torch.Tensor, tuple]:
        return loss_and_metric_inputs(self.model, self.spec, batch)


    def _step(self, batch, split: str) -> torch.Tensor:
        loss, metric_inputs = self.loss_and_metric_inputs(batch)
        metric = self.metrics[f"{split}_metric"]
        metric.update(*[t.detach() for t in metric_inputs])
        batch_size = len(batch[0])
        if split == "train":
            # The loss once per sequence: the mean over the epoch weighted by batch size
            # (nan_strategy="disable" drops update's weight argument).
            self.train_loss.update(loss.detach().expand(batch_size))
        else:
            self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=batch_size, prog_bar=split == "val")
            self.log(f"{split}/{self.spec.metric}", metric, on_step=False, on_epoch=True, batch_size=batch_size,
                     prog_bar=split == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def on_train_epoch_end(self):
        # Training metrics are accumulated by the metrics themselves and logged once per epoch:
        # a self.log per step costs Lightning's bookkeeping about 0.6 ms a step.
        self.log("train/loss", self.train_loss.compute())
        self.log(f"train/{self.spec.metric}", self.metrics["train_metric"].compute())
        self.train_loss.reset()
        self.metrics["train_metric"].reset()

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optim = OmegaConf.create(self.hparams.optim)
        if optim.get("fused") and "mixed" in str(self.trainer.precision):
            # Lightning's mixed precision unscales the gradients itself before clipping them and
            # refuses an optimiser that would do it again (a fused one): the update runs unfused.
            optim.fused = False
        return build(optim, "optim", params=self.model.parameters())


def plain(config: Mapping[str, Any] | DictConfig) -> dict:
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


def loss_and_metric_inputs(model: torch.nn.Module, spec: TaskSpec, batch) -> tuple[torch.Tensor, tuple]:
    """The batch's loss and the arguments its metric is updated with (the table above)."""
    x, y, *rest = batch
    mask = rest[0] if rest else None
    # A whole-sequence task needs nothing more for padding than the model reading each
    # sequence's last real step: its loss and metric are per sequence.
    logits = (model(x) if mask is None else model(x, mask.sum(1))).float()
    kind = spec.output
    if kind == "regression":
        return F.mse_loss(logits, y), (logits, y)
    if kind == "classification":
        return F.cross_entropy(logits, y), (logits, y)
    if kind == "per_step_classification":
        if mask is not None:
            loss = F.cross_entropy(logits[mask], y[mask])
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        last = spec.metric_last_steps
        scored_logits, scored_y = (logits[:, -last:], y[:, -last:]) if last else (logits, y)
        if mask is not None:
            scored_mask = mask[:, -last:] if last else mask
            return loss, (scored_logits[scored_mask], scored_y[scored_mask])
        return loss, (scored_logits.flatten(0, 1), scored_y.flatten())
    # per-step multi-label: NLL of each step = sum over labels of the Bernoulli NLL
    nll = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)  # [B, T]
    if mask is not None:
        nll = nll[mask]
    loss = nll.mean()
    return loss, (nll,)

