"""scikit-learn's 8x8 handwritten digits, read as a sequence: a small real data set that ships
with scikit-learn (1,797 images), so it needs no download."""

from __future__ import annotations

import numpy as np
import torch

from grubench.data.base import SequenceDataModule
from grubench.spec import TaskSpec


class DigitsDataModule(SequenceDataModule):
    """Digit classification from a sequence of pixels.

    `steps="pixels"`: 64 steps of one pixel each (row by row); `steps="rows"`: 8 steps of a row
    of 8 pixels. Pixels are scaled from 0..16 to 0..1. The split is stratified by class and
    drawn from the seed: `val_fraction` and `test_fraction` of the images, the rest for training.

    x: [N, 64, 1] or [N, 8, 8] float, y: [N] long (10 classes). Chance accuracy 0.1.
    """

    def __init__(self, steps: str = "pixels", val_fraction: float = 0.15, test_fraction: float = 0.15,
                 batch_size: int = 64, seed: int = 0, limit: int | None = None):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        if steps not in ("pixels", "rows"):
            raise ValueError(f"steps must be 'pixels' or 'rows', got {steps!r}")
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < fraction < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {fraction!r}")
        if val_fraction + test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave images for training")
        self.steps = steps
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        seq_len, features = (64, 1) if steps == "pixels" else (8, 8)
        self.spec = TaskSpec(
            name="digits", input_kind="real", input_size=features, output="classification", num_outputs=10,
            seq_len=seq_len, metric="acc", chance={"acc": 0.1, "loss": float(np.log(10))},
        )

    def make_splits(self):
        # scikit-learn loads here, not with grubench.data: it costs every other run a second of start-up.
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(len(images), self.spec.seq_len, -1)
        y = torch.tensor(labels, dtype=torch.long)
        index = np.arange(len(y))
        rest, test = train_test_split(index, test_size=self.test_fraction, stratify=labels, random_state=self.seed)
        val_share = self.val_fraction / (1 - self.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=self.seed)
        return {name: (x[idx], y[idx]) for name, idx in (("train", train), ("val", val), ("test", test))}
