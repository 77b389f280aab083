"""Data sets: LightningDataModules that describe their task (see `base.TaskSpec`)."""

from grubench.data.arrays import ArraysDataModule
from grubench.data.base import SequenceDataModule, TensorBatches
from grubench.data.chorales import ChoralesDataModule
from grubench.data.digits import DigitsDataModule
from grubench.data.mnist import SequentialMNISTDataModule
from grubench.data.mnist1d import MNIST1DDataModule
from grubench.data.synthetic import AddingDataModule, CopyDataModule
from grubench.data.uea import UEADataModule
from grubench.spec import TaskSpec

__all__ = [
    "AddingDataModule",
    "ArraysDataModule",
    "ChoralesDataModule",
    "CopyDataModule",
    "DigitsDataModule",
    "MNIST1DDataModule",
    "SequenceDataModule",
    "SequentialMNISTDataModule",
    "TaskSpec",
    "TensorBatches",
    "UEADataModule",
]
