"""Your own sequences from one file (`dataset=arrays dataset.path=FILE`): one target per sequence,
classification or regression, any lengths.

Two layouts (docs/datasets.md shows both):

`.npz` (numpy.savez), arrays by name:

    x        [N, T, F] numbers      N sequences of T steps of F features; steps past a
                                     sequence's length are padding and may hold anything
    y        [N] integers or strings (classes) or floats (regression)
    lengths  [N] integers, optional: each sequence's real steps, 1..T (default: all T)
    split    [N] strings, optional: "train", "val" or "test" per sequence

`.csv` or `.parquet`, long format, one row per sequence and step:

    id, step, <feature columns...>, target[, split]

with the column names set by `id_column`, `step_column`, `target_column`, `feature_columns`
(default: every other column) and `split_column` (used where the file has it). A sequence's rows
are ordered by step (any numbers, each once per sequence); its length is its number of rows;
its target (and split) must be the same on all its rows. Sequences keep the order in which
their ids first appear, so an .npz and a long file of the same data give the same run.

Without a split, test and validation sets are drawn (`labelled.LabelledSequences`). Every
problem with the file is refused when the data module is built, in one line naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from grubench.data.labelled import LabelledSequences, Sequences
from grubench.errors import first_line

NPZ_ARRAYS = ("x", "y", "lengths", "split")
LONG_SUFFIXES = (".csv", ".parquet", ".pq")


def read_npz(path: Path) -> Sequences:
    """The .npz layout (module docstring) -> Sequences; ValueError naming the file otherwise."""
    try:
        file = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not an .npz file numpy can read ({first_line(error)})") from error
    if not isinstance(file, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds one array, not named arrays: save with numpy.savez(path, x=..., y=...)")
    with file:
        names = list(file.files)
        unknown = [name for name in names if name not in NPZ_ARRAYS]
        if unknown:
            raise ValueError(f"{path}: unknown arrays {', '.join(unknown)}; the file holds x, y and optionally "
                             "lengths and split")
        for needed in ("x", "y"):
            if needed not in names:
                raise ValueError(f"{path}: no array {needed!r} (it holds {', '.join(names) or 'none'}); "
                                 "x [N, T, F] and y [N] are needed")
        try:
            arrays = {name: file[name] for name in names}
        except ValueError as error:  # an object array: loading it would unpickle, which a data file must not do
            raise ValueError(f"{path}: holds an object array (pickled); save strings as text arrays, "
                             "numpy.asarray(labels, dtype=str)") from error
    x = arrays["x"]
    steps = x.shape[1] if x.ndim == 3 else 1
    lengths = arrays.get("lengths", np.full(len(x) if x.ndim else 0, steps))
    return Sequences(x=x, lengths=lengths, y=arrays["y"], split=arrays.get("split"))


def read_long(path: Path, id_column: str, step_column: str, target_column: str,
              feature_columns: list[str] | None, split_column: str | None) -> Sequences:
    """A long-format .csv or .parquet table (module docstring) -> Sequences; ValueError naming
    the file otherwise."""
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except ImportError as error:
        raise ValueError(f"{path}: reading .parquet needs pyarrow: pip install pyarrow") from error
    except Exception as error:  # noqa: BLE001 - pandas and pyarrow raise many kinds for a bad file
        raise ValueError(f"{path}: cannot read it as a table ({first_line(error)})") from error
    columns = list(frame.columns)
    split_column = split_column if split_column in columns else None
    features = list(feature_columns) if feature_columns else [
        c for c in columns if c not in (id_column, step_column, target_column, split_column)]
    for column in (id_column, step_column, target_column, *features):
        if column not in columns:
            raise ValueError(f"{path}: no column {column!r} (its columns: {', '.join(map(str, columns))})")
    if not features:
        raise ValueError(f"{path}: no feature columns besides {id_column!r}, {step_column!r} and {target_column!r}")
    if frame.empty:
        raise ValueError(f"{path}: holds no rows")
    for column in (id_column, step_column, target_column, *([split_column] if split_column else [])):
        missing = frame[column].isna().to_numpy()
        if missing.any():
            raise ValueError(f"{path}: column {column!r} has no value in row {int(np.argmax(missing))}")
    for column in (step_column, *features):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ValueError(f"{path}: column {column!r} must hold numbers, got {frame[column].dtype}")

    codes, ids = pd.factorize(frame[id_column])  # codes in order of first appearance
    steps = frame[step_column].to_numpy()
    order = np.lexsort((steps, codes))
    codes, steps = codes[order], steps[order]
    repeated = (codes[1:] == codes[:-1]) & (steps[1:] == steps[:-1])
    if repeated.any():
        i = int(np.argmax(repeated))
        raise ValueError(f"{path}: sequence {ids[codes[i]]} has step {steps[i]} twice")
    lengths = np.bincount(codes, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x = np.zeros((len(ids), lengths.max(), len(features)))
    x[codes, np.arange(len(codes)) - starts[codes]] = frame[features].to_numpy(dtype=np.float64)[order]

    def per_sequence(column: str) -> np.ndarray:
        values = frame[column].to_numpy()[order]
        changes = values != values[starts][codes]
        if changes.any():
            raise ValueError(f"{path}: column {column!r} changes within sequence {ids[codes[int(np.argmax(changes))]]}: "
                             "it must hold one value per sequence")
        first = values[starts]
        return first.astype(str) if first.dtype.kind == "O" else first

    split = per_sequence(split_column) if split_column else None
    return Sequences(x=x, lengths=lengths, y=per_sequence(target_column), split=split, ids=np.asarray(ids))


class ArraysDataModule(LabelledSequences):
    """Sequences and one target each from a file: .npz, or a long-format .csv or .parquet table
    (the module docstring gives the layouts).

    x: [N, T, F] float, normalised per feature on the training sequences (`normalize`), zeros
    past each length; y: [N] long (class index, classes in sorted order) or float; a mask
    [N, T] when the lengths differ.

    Args:
        path: the file.
        task: "auto" (integers or strings: classification, floats: regression), or
            "classification" / "regression".
        name: the data set's name in run names and records; None: the file's stem.
        id_column, step_column, target_column, feature_columns, split_column: the long
            format's columns (feature_columns None: every other column).
        val_fraction, test_fraction, split_seed, normalize: as `labelled.LabelledSequences`.
    """

    def __init__(self, path: str | None = None, task: str = "auto", name: str | None = None, id_column: str = "id",
                 step_column: str = "step", target_column: str = "target", feature_columns: list[str] | None = None,
                 split_column: str | None = "split", val_fraction: float = 0.2, test_fraction: float = 0.2,
                 split_seed: int = 0, normalize: bool = True, batch_size: int = 32, seed: int = 0,
                 limit: int | None = None):
        if not path:
            raise ValueError("path: no file given; set dataset.path=FILE (.npz, .csv or .parquet; docs/datasets.md)")
        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"{file}: no such file")
        suffix = file.suffix.lower()
        if suffix == ".npz":
            data = read_npz(file)
        elif suffix in LONG_SUFFIXES:
            if isinstance(feature_columns, str):
                feature_columns = [feature_columns]
            data = read_long(file, id_column, step_column, target_column, feature_columns, split_column)
        else:
            raise ValueError(f"{file}: unknown kind of file {suffix or '(no suffix)'}; "
                             f"give .npz, {', '.join(LONG_SUFFIXES)}")
        super().__init__(name or file.stem, str(file), data, task=task, val_fraction=val_fraction,
                         test_fraction=test_fraction, split_seed=split_seed, normalize=normalize,
                         batch_size=batch_size, seed=seed, limit=limit)
        self.path = file
