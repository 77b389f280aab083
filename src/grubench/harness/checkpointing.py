"""Checkpoints a run resumes from: written atomically, read with `weights_only`.

    <checkpoint folder>/best.ckpt   the best validation score so far (Lightning's ModelCheckpoint)
    <checkpoint folder>/last.ckpt   the state at the start of every epoch after the first, and at
                                    the end of training (`ResumePoint`)

`last.ckpt` is written at the start of an epoch, not at the end of the one before, because
Lightning logs an epoch's training metrics after its own end-of-epoch checkpoint: a run killed
in between would resume past an epoch whose metrics never reached MLflow. At the start of the
next epoch everything the previous one logged is in the store; a resumed run runs the killed
epoch again from its first batch, with the same data order and random state.

Every checkpoint also carries the MLflow run id (`checkpoint["grubench"]`), so that a path is
enough to find the run it belongs to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from grubench.internals import rewind_epoch_start

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file beside the target, syncs it to disk, then renames it over the
    target (atomic on one file system): a kill leaves the old checkpoint or the new, never half
    of one. Loads with `weights_only=True`: tensors and plain containers, no arbitrary objects."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def read(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's contents, read with `weights_only=True` on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def run_id_of(path: str | os.PathLike) -> str | None:
    """The MLflow run a checkpoint belongs to, or None for a checkpoint grubench did not write."""
    return read(path).get("grubench", {}).get("run_id")


class ResumePoint(pl.Callback):
    """Writes `<dirpath>/last.ckpt` at the start of every epoch after the first and when
    training ends, with the run id, the torch random state (dropout) and the training batches'
    state (the generator of their order, `TensorBatches.state_dict`); restores both when a run
    resumes, so that it draws what the uninterrupted run would have drawn."""

    def __init__(self, dirpath: str | os.PathLike):
        self.path = Path(dirpath) / LAST
        self.run_id: str | None = None
        self.between_epochs = False
        self.batches_state: dict | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.batches_state is not None:  # resumed: the loader exists now, before its first batch
            trainer.train_dataloader.load_state_dict(self.batches_state)
            self.batches_state = None
        if trainer.current_epoch > 0:
            self.between_epochs = True
            try:
                trainer.save_checkpoint(self.path, weights_only=False)  # False: the whole state, not only weights
            finally:
                self.between_epochs = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["grubench"] = {"run_id": self.run_id, "torch_rng": torch.get_rng_state()}
        if hasattr(trainer.train_dataloader, "state_dict"):
            checkpoint["grubench"]["train_batches"] = trainer.train_dataloader.state_dict()
        if self.between_epochs:
            rewind_epoch_start(checkpoint)  # resume at the new epoch's start, not past its batches

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("grubench")
        if state and state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])
        if state:
            self.batches_state = state.get("train_batches")
