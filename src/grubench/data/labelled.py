"""Whole-sequence examples read from files: one target per sequence, any lengths.

The part that `dataset=uea` and `dataset=arrays` share, after each has read its files into
`Sequences`: the checks, the split, the per-channel normalisation, the task and the tensors.

    Sequences(x [N, T, F], lengths [N], y [N], split [N] or None)
      -> checked: x finite at every real step, lengths 1..T, targets of one kind, two classes
         or more, no class outside training
      -> split: the given one, else test and validation drawn from `split_seed` (per class, so
         that every class keeps a training sequence)
      -> normalised per channel: mean 0, std 1 over the real steps of the training sequences
      -> tensors per split: x [n, T, F] float (zeros past each length), y [n] long (class index)
         or float (regression), and mask [n, T] bool when the lengths differ

Equal lengths give `(x, y)` batches: no mask, so the models take their plain path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grubench.data.base import SequenceDataModule
from grubench.spec import TaskSpec

SPLITS = ("train", "val", "test")
TASKS = ("auto", "classification", "regression")


@dataclass
class Sequences:
    """Sequences as read from a file, before any check.

    x:       [N, T, F] numbers; steps at and past a sequence's length are padding (ignored)
    lengths: [N] integers, each sequence's real steps
    y:       [N] one target per sequence: integers or strings (classes) or floats
    split:   [N] "train" / "val" / "test" per sequence, or None (drawn)
    ids:     [N] how the file names each sequence, for messages (None: its index)
    """

    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    split: np.ndarray | None = None
    ids: np.ndarray | None = None


def draw(index: np.ndarray, labels: np.ndarray | None, fraction: float, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """Split `index` into (kept, drawn), `fraction` of it drawn at random. With class `labels`
    (one per index) the draw is per class and leaves every class at least one kept index.
    Both parts come back sorted."""
    if fraction == 0:
        return np.sort(index), index[:0]
    groups = [index] if labels is None else [index[labels == c] for c in np.unique(labels)]
    drawn = []
    for group in groups:
        k = round(len(group) * fraction)
        if labels is not None:
            k = min(k, len(group) - 1)
        drawn.append(rng.permutation(group)[:k])
    drawn = np.sort(np.concatenate(drawn))
    return np.setdiff1d(index, drawn), drawn


class LabelledSequences(SequenceDataModule):
    """Whole-sequence classification or regression from `Sequences` (see the module docstring).

    Args:
        name: the data set's name in the task description (run names, records).
        source: what the data came from (a file, a folder), named at the start of every refusal.
        data: the sequences, read.
        task: "classification", "regression" or "auto" (integers or strings: classes, floats:
            regression).
        val_fraction: share of the training sequences drawn for validation (0: none).
        test_fraction: share of all sequences drawn for testing, where `data.split` is None.
        split_seed: seed of those draws.
        normalize: scale each channel to mean 0 and std 1 over the training sequences' real steps.

    Every problem raises ValueError "<source>: <problem>", before anything else is made.
    """

    def __init__(self, name: str, source: str, data: Sequences, task: str = "auto", val_fraction: float = 0.2,
                 test_fraction: float = 0.2, split_seed: int = 0, normalize: bool = True, batch_size: int = 32,
                 seed: int = 0, limit: int | None = None):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        for option, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
                raise ValueError(f"{option} must lie in [0, 1), got {fraction!r}")
        self.source = source
        self.check_shapes(data)
        self.classification = self.decide_task(data.y, task)
        self.index = self.split(data, val_fraction, test_fraction, split_seed)
        self.classes, targets = self.targets(data.y)
        self.lengths = data.lengths.astype(np.int64)
        self.x = self.normalized(data, normalize)
        self.y = targets
        self.spec = TaskSpec(
            name=name, input_kind="real", input_size=self.x.shape[2],
            output="classification" if self.classification else "regression",
            num_outputs=len(self.classes) if self.classification else 1, seq_len=self.x.shape[1],
            metric="acc" if self.classification else "mse", chance=self.chance(),
        )

    def refuse(self, problem: str):
        raise ValueError(f"{self.source}: {problem}")

    def name_of(self, data: Sequences, i: int) -> str:
        return f"sequence {data.ids[i]}" if data.ids is not None else f"sequence {i}"

    def check_shapes(self, data: Sequences) -> None:
        """Shapes, lengths, finite inputs at real steps, targets without gaps."""
        x, lengths, y = data.x, data.lengths, data.y
        if x.ndim != 3:
            self.refuse(f"x must be [N, T, F] (sequences, steps, features), got shape {x.shape}")
        N, T, F = x.shape
        if N == 0 or T == 0 or F == 0:
            self.refuse(f"x has no sequences, steps or features: shape {x.shape}")
        if x.dtype.kind not in "fiub":
            self.refuse(f"x must hold numbers, got dtype {x.dtype}")
        if y.ndim != 1 or len(y) != N:
            self.refuse(f"y must hold one target per sequence, shape ({N},), got {y.shape}")
        if lengths.ndim != 1 or len(lengths) != N or lengths.dtype.kind not in "iu":
            self.refuse(f"lengths must be ({N},) integers, got shape {lengths.shape} of {lengths.dtype}")
        if lengths.min() < 1 or lengths.max() > T:
            i = int(np.argmax((lengths < 1) | (lengths > T)))
            self.refuse(f"lengths must lie in 1..{T} (the steps of x), {self.name_of(data, i)} has {lengths[i]}")
        real = np.arange(T) < lengths[:, None]
        bad = real[..., None] & ~np.isfinite(x.astype(np.float64))
        if bad.any():
            i, t, f = (int(v[0]) for v in np.nonzero(bad))
            self.refuse(f"x is not a finite number (NaN or inf) at {self.name_of(data, i)}, step {t}, feature {f}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            self.refuse(f"y is not a finite number (NaN or inf) at {self.name_of(data, int(np.argmin(np.isfinite(y))))}")
        if y.dtype.kind not in "fiubUS":
            self.refuse(f"y must hold numbers or strings, got dtype {y.dtype}")
        if data.split is not None:
            values = np.asarray(data.split).astype(str)
            unknown = sorted(set(values.tolist()) - set(SPLITS))
            if data.split.shape != (N,) or unknown:
                self.refuse(f"split must give train, val or test for each of the {N} sequences"
                            + (f", got {unknown[:3]}" if unknown else f", got shape {data.split.shape}"))
            for needed in ("train", "test"):
                if needed not in values:
                    self.refuse(f"split gives no {needed} sequences")
            data.split = values

    def decide_task(self, y: np.ndarray, task: str) -> bool:
        """True for classification: asked for, or `auto` with integer or string targets."""
        if task == "regression":
            if y.dtype.kind not in "fiub":
                self.refuse(f"task=regression needs numeric targets, y holds {y.dtype}")
            return False
        return task == "classification" or y.dtype.kind != "f"

    def split(self, data: Sequences, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
        """Sequence indices per split: the file's own split where it has one (validation drawn
        from its training part when it names none), else drawn: test from all, then validation
        from the rest."""
        rng = np.random.default_rng(seed)
        labels = data.y if self.classification else None
        everything = np.arange(len(data.y))
        if data.split is None:
            rest, test = draw(everything, labels, test_fraction, rng)
            if len(test) == 0:
                self.refuse(f"test_fraction={test_fraction} leaves no test sequences")
        else:
            rest, test = everything[data.split != "test"], everything[data.split == "test"]
        if data.split is not None and "val" in data.split:
            train, val = everything[data.split == "train"], everything[data.split == "val"]
        else:
            train, val = draw(rest, None if labels is None else labels[rest], val_fraction, rng)
        if len(train) == 0:
            self.refuse("no training sequences are left: lower val_fraction or test_fraction")
        return {"train": train, "val": val, "test": test}

    def targets(self, y: np.ndarray) -> tuple[list, np.ndarray]:
        """(the classes, in sorted order, and y as class indices) for classification; ([], y as
        floats) for regression. Refuses one class only, and classes the training split lacks."""
        if not self.classification:
            return [], y.astype(np.float32)
        classes = np.unique(y[self.index["train"]])
        if len(classes) < 2:
            self.refuse(f"the training sequences have one class only ({classes[0]!r}): classification needs two or more")
        for split in ("val", "test"):
            unseen = np.setdiff1d(np.unique(y[self.index[split]]), classes)
            if len(unseen):
                shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in unseen[:5])
                self.refuse(f"{split} labels never seen in training: {shown}")
        return [c.item() for c in classes], np.searchsorted(classes, y).astype(np.int64)

    def normalized(self, data: Sequences, normalize: bool) -> np.ndarray:
        """x as float32 with zeros past each length, each channel scaled by the training
        sequences' mean and std over their real steps (a constant channel only centred)."""
        x = data.x.astype(np.float64)
        real = np.arange(x.shape[1]) < self.lengths[:, None]  # [N, T]
        if normalize:
            steps = x[self.index["train"]][real[self.index["train"]]]  # [real training steps, F]
            mean, std = steps.mean(0), steps.std(0)
            x = (x - mean) / np.where(std > 0, std, 1.0)
        x[~real] = 0.0
        return x.astype(np.float32)

    def chance(self) -> dict[str, float]:
        """What a model that ignores the inputs scores on the test sequences: the most frequent
        training class (accuracy; several equally frequent: their mean, so 1/K for balanced
        classes; loss: the cross-entropy of the training class shares), or the training mean (MSE)."""
        train, test = self.y[self.index["train"]], self.y[self.index["test"]]
        if not self.classification:
            mse = float(np.mean((test - train.mean()) ** 2))
            return {"mse": mse, "loss": mse}
        shares = np.bincount(train, minlength=len(self.classes)) / len(train)
        most = np.flatnonzero(shares == shares.max())
        return {"acc": float(np.mean(np.isin(test, most)) / len(most)), "loss": float(-np.log(shares[test]).mean())}

    def split_index(self) -> dict[str, np.ndarray]:
        """Each split's sequence indices, cut by `limit` as the tensors are."""
        return {split: index[: self.limit] for split, index in self.index.items()}

    def make_splits(self):
        masked = bool((self.lengths < self.x.shape[1]).any())
        x, y = torch.from_numpy(self.x), torch.from_numpy(self.y)
        mask = torch.arange(self.x.shape[1]) < torch.from_numpy(self.lengths).unsqueeze(1)
        splits = {}
        for split, index in self.index.items():
            picked = torch.from_numpy(index)
            splits[split] = (x[picked], y[picked], mask[picked]) if masked else (x[picked], y[picked])
        return splits

    def describe(self) -> dict[str, int | float]:
        """Sequences and their shortest and longest length per split, the classes (classification)
        and the channels."""
        stats: dict[str, int | float] = {"channels": self.spec.input_size}
        if self.classification:
            stats["classes"] = len(self.classes)
        for split, index in self.split_index().items():
            lengths = self.lengths[index]
            stats[f"{split}/sequences"] = len(index)
            if len(index):
                stats[f"{split}/min_length"] = int(lengths.min())
                stats[f"{split}/max_length"] = int(lengths.max())
        return stats
