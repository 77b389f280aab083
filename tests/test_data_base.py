"""The data-set base: splits cut by `limit` and moved to the trainer's device in `setup`."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from grubench.data import AddingDataModule


def test_setup_moves_the_splits_to_the_trainers_device():
    datamodule = AddingDataModule(train_size=8, val_size=4, test_size=4, seq_len=5, limit=6)
    assert datamodule.split_sizes() == {"train": 6, "val": 4, "test": 4}  # built on the CPU, no trainer
    assert datamodule.splits["train"][0].device.type == "cpu"
    # a stand-in trainer whose device is "meta" (shapes without storage): any accelerator works alike
    datamodule.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    datamodule.setup("fit")
    assert {t.device.type for tensors in datamodule.splits.values() for t in tensors} == {"meta"}
    x, y = next(iter(datamodule.train_dataloader()))  # shuffled batches index on the device
    assert x.device.type == "meta" and x.shape == (6, 5, 2)
    assert datamodule.describe() == {"train/sequences": 6, "val/sequences": 4, "test/sequences": 4}
