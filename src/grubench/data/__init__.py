"""Data sets: LightningDataModules that describe their task (see `base.TaskSpec`)."""

from grubench.data.base import SequenceDataModule, TaskSpec, TensorBatches
from grubench.data.digits import DigitsDataModule
from grubench.data.synthetic import AddingDataModule, CopyDataModule

__all__ = [
    "AddingDataModule",
    "CopyDataModule",
    "DigitsDataModule",
    "SequenceDataModule",
    "TaskSpec",
    "TensorBatches",
]
