"""UCR/UEA time-series classification (`dataset=uea dataset.name=NAME`), read with aeon.

The archive (timeseriesclassification.com) gives each problem as two `.ts` files, NAME_TRAIN.ts
and NAME_TEST.ts; the archive's own train/test split is kept, and validation sequences are drawn
from the training file (`labelled.LabelledSequences`). A few problems ship inside the aeon package
itself (JapaneseVowels, BasicMotions, GunPoint, ArrowHead, ItalyPowerDemand, ...: `bundled()`),
so they need no download; any other is read from a local copy of the archive in `data_dir`,
laid out as the archive's zip files unpack:

    <data_dir>/<NAME>/<NAME>_TRAIN.ts, <NAME>_TEST.ts      or      <data_dir>/<NAME>_TRAIN.ts, ...

Nothing is ever downloaded: a problem found in neither place is refused in one line saying
where to put its files. aeon reads each file into [C, L] arrays per case (C channels, L steps,
the same L for every channel of a case, any L across cases); grubench feeds them as [L, C]
steps, padded after the last step with a mask when the lengths differ.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from grubench.data.base import cache_root
from grubench.data.labelled import LabelledSequences, Sequences
from grubench.errors import first_line

ARCHIVE = "https://timeseriesclassification.com"


def aeon_data_dir() -> Path | None:
    """The folder of the data sets bundled inside the installed aeon package (found without
    importing aeon, which takes seconds); None when aeon is not installed."""
    found = importlib.util.find_spec("aeon")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / "datasets" / "data"


def is_classification(ts_file: Path) -> bool:
    """Whether a .ts file's header declares class labels (`@classLabel true ...`)."""
    with open(ts_file, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            words = line.strip().lower().split()
            if words[:1] == ["@data"]:
                return False
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def bundled() -> dict[str, Path]:
    """The classification problems bundled with aeon: {name: folder holding NAME_TRAIN.ts and
    NAME_TEST.ts}."""
    root = aeon_data_dir()
    if root is None or not root.is_dir():
        return {}
    found = {}
    for train in sorted(root.glob("*/*_TRAIN.ts")):
        name = train.name[: -len("_TRAIN.ts")]
        if (train.parent / f"{name}_TEST.ts").is_file() and is_classification(train):
            found[name] = train.parent
    return found


def find(name: str, data_dir: Path) -> Path:
    """The folder holding NAME_TRAIN.ts and NAME_TEST.ts: in `data_dir` (as <NAME>/ or at its
    top), else aeon's bundled copy; ValueError saying where to put the files otherwise."""
    for folder in (data_dir / name, data_dir):
        if (folder / f"{name}_TRAIN.ts").is_file() and (folder / f"{name}_TEST.ts").is_file():
            return folder
    copies = bundled()
    if name in copies:
        return copies[name]
    shown = ", ".join(copies) or "none (aeon is not installed: pip install aeon)"
    raise ValueError(f"name={name}: not bundled with aeon and not in {data_dir}; put {name}_TRAIN.ts and "
                     f"{name}_TEST.ts in {data_dir / name} (from {ARCHIVE}) or set dataset.data_dir; "
                     f"bundled: {shown}")


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A .ts file -> (cases, each [L, C] float, and their class labels as strings)."""
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as error:
        raise ValueError(f"{path}: reading .ts files needs aeon: pip install aeon ({first_line(error)})") from error
    try:
        X, y = load_from_ts_file(str(path))
    except Exception as error:  # noqa: BLE001 - aeon raises several kinds for a malformed file
        raise ValueError(f"{path}: aeon cannot read it ({first_line(error)})") from error
    return [np.asarray(case, dtype=np.float64).T for case in X], np.asarray(y).astype(str)


def stack(cases: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cases [L_i, C] -> (x [N, max L, C], zeros after each case's end; lengths [N])."""
    lengths = np.array([len(case) for case in cases])
    x = np.zeros((len(cases), lengths.max(), cases[0].shape[1]))
    for i, case in enumerate(cases):
        x[i, : len(case)] = case
    return x, lengths


class UEADataModule(LabelledSequences):
    """A UCR/UEA classification problem (module docstring): the archive's train/test split, a
    validation share drawn from the training cases, channels normalised on the training cases.

    x: [N, T, C] float, T the longest case of the problem; y: [N] long (class index, the
    archive's labels in sorted order); a mask [N, T] when the cases differ in length
    (JapaneseVowels: 7 to 29 steps). Chance: the most frequent training class, on the test cases.

    Args:
        name: the problem, as the archive spells it ("JapaneseVowels").
        data_dir: a local copy of the archive; None: `cache_root()/uea`. A problem found there
            is read from there, else from aeon's bundled copy.
        val_fraction, split_seed, normalize: as `labelled.LabelledSequences`.
    """

    def __init__(self, name: str = "JapaneseVowels", data_dir: str | None = None, val_fraction: float = 0.2,
                 split_seed: int = 0, normalize: bool = True, batch_size: int = 32, seed: int = 0,
                 limit: int | None = None):
        if not name or not isinstance(name, str) or "/" in name:
            raise ValueError(f"name must be a problem's name, such as JapaneseVowels, got {name!r}")
        folder = find(name, Path(data_dir).expanduser() if data_dir else cache_root() / "uea")
        if not is_classification(folder / f"{name}_TRAIN.ts"):
            raise ValueError(f"{folder / f'{name}_TRAIN.ts'}: not a classification problem (no '@classLabel true' "
                             "in its header); dataset=arrays reads regression targets")
        train_cases, train_y = read_ts(folder / f"{name}_TRAIN.ts")
        test_cases, test_y = read_ts(folder / f"{name}_TEST.ts")
        channels = {case.shape[1] for case in train_cases + test_cases}
        if len(channels) > 1:
            raise ValueError(f"{folder}: {name}'s cases have different numbers of channels: {sorted(channels)}")
        x, lengths = stack(train_cases + test_cases)
        data = Sequences(x=x, lengths=lengths, y=np.concatenate([train_y, test_y]),
                         split=np.array(["train"] * len(train_y) + ["test"] * len(test_y)),
                         ids=np.array([f"{i} of {name}_TRAIN.ts" for i in range(len(train_y))]
                                      + [f"{i} of {name}_TEST.ts" for i in range(len(test_y))]))
        super().__init__(name, str(folder / f"{name}_*.ts"), data, task="classification", val_fraction=val_fraction,
                         split_seed=split_seed, normalize=normalize, batch_size=batch_size, seed=seed, limit=limit)
        self.folder = folder
