"""What every data set gives the rest of grubench: a task description and tensor-held splits.

A data set is a LightningDataModule that also describes its task (`TaskSpec`). The model reads
the spec to size its input encoding and head; the training task reads it to pick the loss, the
metrics and the chance level. Nothing else about the data leaks out.

Batches are tuples `(x, y)` or `(x, y, mask)`:

    x     [B, T, F] float (real-valued inputs)   or  [B, T] long (token inputs)
    y     [B] float        regression
          [B] long         classification
          [B, T] long      per-step classification
          [B, T, K] float  per-step multi-label (0/1 targets)
    mask  [B, T] bool, optional: which steps are real (variable-length sequences); the real
          steps come first and the padding after them, so `TensorBatches` cuts each batch to
          its longest sequence

Splits are built once (`make_splits`), cut by `limit`, and moved to the trainer's device when a
trainer sets the module up, so that batches are slices of tensors already on the accelerator.
Data that is slow to make (generated, parsed, read from files) is cached under `cache_root()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from grubench.spec import TaskSpec, require_positive


class TensorBatches:
    """Batches of tensors held in memory: an iterable a Trainer accepts as a dataloader.

    Faster than a DataLoader over a TensorDataset for small sets (one slice per batch instead of
    one index per sample and a collate), with no worker processes. When `shuffle` is set, each
    pass draws a new order from its own generator, seeded once, so the order is reproducible;
    the generator's state is saved in checkpoints (`state_dict`), so a resumed run draws the
    orders the uninterrupted run would have drawn.

    In a distributed run (DDP) each of the W processes takes every W-th sequence of the order,
    the order wrapped round to a multiple of W so that all take the same number of batches.

    Masked batches `(x, y, mask)` are cut to the longest sequence they hold (the lengths are
    counted once, on the CPU, so cutting needs no device synchronisation); a y of one target per
    sequence ([B]) is left whole.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool = False, seed: int = 0):
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        masked = len(tensors) == 3 and tensors[2].dtype == torch.bool and tensors[2].dim() == 2
        self.lengths = tensors[2].sum(1).cpu() if masked else None

    def __len__(self) -> int:
        n = -(-len(self.tensors[0]) // process_share()[1])
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        rank, world = process_share()
        if world > 1:
            order = torch.arange(n) if order is None else order
            share = -(-n // world)
            order = order.repeat(-(-share * world // n))[: share * world][rank::world]
            n = share
        # The order goes to the tensors' device once per pass: a copy from the host per batch
        # would make the host wait for the GPU at every step.
        on_device = None if order is None else order.to(self.tensors[0].device)
        for start in range(0, n, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
                batch = tuple(t[index] for t in self.tensors)
            else:
                index = order[start : start + self.batch_size]
                batch = tuple(t[on_device[start : start + self.batch_size]] for t in self.tensors)
            if self.lengths is not None:
                longest = int(self.lengths[index].max())
                batch = tuple(t[:, :longest] if t.dim() >= 2 else t for t in batch)  # not a y [B] of one per sequence
            yield batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def process_share() -> tuple[int, int]:
    """(rank, number of processes) in a distributed run, (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SequenceDataModule(pl.LightningDataModule):
    """Base for grubench data sets: splits held as tensors, served by `TensorBatches`.

    Subclasses set `self.spec` in `__init__` (after checking their arguments, so that a bad
    value fails before any run opens) and implement `make_splits()`, which returns a dict
    {"train": tensors, "val": tensors, "test": tensors}. `limit` keeps only the first N
    sequences of each split, for tiny runs.
    """

    spec: TaskSpec

    def __init__(self, batch_size: int, seed: int, limit: int | None = None):
        super().__init__()
        require_positive(batch_size=batch_size)
        if limit is not None:
            require_positive(limit=limit)
        self.batch_size = batch_size
        self.seed = seed
        self.limit = limit
        self.splits: dict[str, tuple[torch.Tensor, ...]] | None = None

    def make_splits(self) -> dict[str, tuple[torch.Tensor, ...]]:
        raise NotImplementedError

    def planned_bytes(self) -> int | None:
        """About how much memory making the splits takes, told before making them (None: not
        known in advance; data read from files is bounded by the files)."""
        return None

    def setup(self, stage: str | None = None) -> None:
        """Build the splits once; when a trainer calls, move them to its device."""
        if self.splits is None:
            splits = self.make_splits()
            if self.limit is not None:
                splits = {name: tuple(t[: self.limit] for t in tensors) for name, tensors in splits.items()}
            self.splits = splits
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.to_device(trainer.strategy.root_device)

    def to_device(self, device: torch.device | str) -> None:
        """Hold every split on `device` (a no-op where they already are)."""
        device = torch.device(device)
        self.splits = {name: tuple(t.to(device) for t in tensors) for name, tensors in self.splits.items()}

    def split_sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(tensors[0]) for name, tensors in self.splits.items()}

    def unequal_lengths(self) -> bool:
        """Whether the sequences differ in length: some split's batches carry a mask that pads."""
        self.setup()
        return any(len(t) == 3 and t[2].dtype == torch.bool and not bool(t[2].all()) for t in self.splits.values())

    def describe(self) -> dict[str, int | float]:
        """Statistics of the data as it is fed, by name: here the number of sequences per split
        (`<split>/sequences`); data sets with more to say (pieces, steps, notes) add to it."""
        return {f"{name}/sequences": n for name, n in self.split_sizes().items()}

    def train_dataloader(self):
        return TensorBatches(self.splits["train"], self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self):
        return TensorBatches(self.splits["val"], self.batch_size)

    def test_dataloader(self):
        return TensorBatches(self.splits["test"], self.batch_size)


def cache_root() -> Path:
    """Where data that is slow to make is cached: $GRUBENCH_CACHE, else ~/.cache/grubench."""
    return Path(os.environ.get("GRUBENCH_CACHE") or Path.home() / ".cache" / "grubench").expanduser()
