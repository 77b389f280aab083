"""dataset=arrays: sequences and targets from an .npz or a long-format .csv / .parquet file. The
layouts read as docs/datasets.md says, the same data in either gives the same run, the task is
decided from the targets, and every malformed file is refused in one line naming it, with nothing
created (each case by the data module, a few through the command)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grubench.data import ArraysDataModule
from tests.conftest import TINY, runs
from tests.test_doc_commands import commands

N, T, F = 60, 10, 2


def example(seed: int = 0, lengths: bool = True) -> dict[str, np.ndarray]:
    """N sequences of 3..T steps (or all T) of F features; the class (0, 1, 2) is the sign pattern
    of the first feature's mean and the second's, so that a model can learn it."""
    rng = np.random.default_rng(seed)
    y = np.arange(N) % 3
    x = rng.normal(size=(N, T, F)) + np.array([[-1, 0], [1, 0], [0, 2]])[y][:, None, :]
    arrays = {"x": x, "y": y}
    if lengths:
        arrays["lengths"] = rng.integers(3, T + 1, size=N)
        arrays["lengths"][0] = T
        x[np.arange(T) >= arrays["lengths"][:, None]] = np.nan  # padding may hold anything
    return arrays


def long_table(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """The long format of `arrays`: one row per sequence and step, ids "s0", "s1", ..."""
    rows = []
    lengths = arrays.get("lengths", np.full(N, T))
    for i in range(len(arrays["y"])):
        for t in range(lengths[i]):
            row = {"id": f"s{i}", "step": t, "f0": arrays["x"][i, t, 0], "f1": arrays["x"][i, t, 1],
                   "target": arrays["y"][i]}
            if "split" in arrays:
                row["split"] = arrays["split"][i]
            rows.append(row)
    return pd.DataFrame(rows)


def test_an_npz_and_a_csv_of_the_same_data_give_the_same_tensors(tmp_path):
    arrays = example()
    np.savez(tmp_path / "d.npz", **arrays)
    table = long_table(arrays)
    table.sample(frac=1.0, random_state=0).sort_values("id", kind="stable", key=lambda s: s.str[1:].astype(int)) \
        .to_csv(tmp_path / "d.csv", index=False)  # steps out of order within each sequence
    table.to_parquet(tmp_path / "d.parquet")
    made = [ArraysDataModule(str(tmp_path / f"d.{kind}")) for kind in ("npz", "csv", "parquet")]
    for module in made:
        module.setup()
    for split in ("train", "val", "test"):
        for other in made[1:]:
            for a, b in zip(made[0].splits[split], other.splits[split]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert made[0].spec == made[1].spec


def test_the_file_decides_the_split_the_task_and_the_classes(tmp_path):
    arrays = example()
    module = ArraysDataModule(_save(tmp_path, arrays))
    assert module.spec.output == "classification" and module.spec.num_outputs == 3
    assert module.spec.seq_len == T and module.spec.input_size == F
    sizes = module.split_sizes()
    assert sizes == {"train": 39, "val": 9, "test": 12}  # per class of 20: 4 test, then 3 of the 16 left for val
    x, y, mask = module.splits["train"]
    assert torch.equal(mask.sum(1), torch.from_numpy(arrays["lengths"][module.index["train"]]))
    assert (x[~mask] == 0).all()
    real = x[mask]  # normalised on the training sequences' real steps
    torch.testing.assert_close(real.mean(0), torch.zeros(F), atol=1e-5, rtol=0)
    torch.testing.assert_close(real.std(0, unbiased=False), torch.ones(F), atol=1e-5, rtol=0)
    stats = module.describe()
    assert stats["classes"] == 3 and stats["channels"] == F and stats["train/max_length"] <= T

    # a split in the file is kept; its validation set too
    arrays["split"] = np.array(["train"] * 40 + ["val"] * 5 + ["test"] * 15)
    module = ArraysDataModule(_save(tmp_path, arrays))
    assert module.split_sizes() == {"train": 40, "val": 5, "test": 15}
    assert list(module.index["test"]) == list(range(45, 60))

    # strings are classes; floats are regression unless told otherwise
    arrays = example(lengths=False)
    arrays["y"] = np.array(["cat", "dog", "eel"])[arrays["y"]]
    module = ArraysDataModule(_save(tmp_path, arrays))
    assert module.classes == ["cat", "dog", "eel"]
    assert len(module.make_splits()["train"]) == 2  # equal lengths: no mask
    arrays["y"] = np.linspace(0, 1, N)
    assert ArraysDataModule(_save(tmp_path, arrays)).spec.output == "regression"
    arrays["y"] = (np.arange(N) % 2).astype(float)
    assert ArraysDataModule(_save(tmp_path, arrays), task="classification").spec.num_outputs == 2


def _save(folder: Path, arrays: dict, name: str = "d.npz") -> str:
    np.savez(folder / name, **arrays)
    return str(folder / name)


def test_an_npz_and_a_csv_of_the_same_data_give_the_same_run(cli, store, tmp_path):
    arrays = example()
    np.savez(tmp_path / "same.npz", **arrays)
    long_table(arrays).to_csv(tmp_path / "same.csv", index=False)
    scores = []
    for kind in ("npz", "csv"):
        result = cli("+model=gru", "dataset=arrays", f"dataset.path=same.{kind}", *TINY)
        assert result.returncode == 0, result.stderr
    finished = runs(store)
    assert len(finished) == 2 and {r.info.status for r in finished} == {"FINISHED"}
    for run in finished:
        scores.append({k: v for k, v in run.data.metrics.items() if k.split("/")[0] in ("train", "val", "test")})
        assert run.data.tags["data/classes"] == "3" and run.data.tags["dataset"] == "same"
    assert scores[0] == scores[1] and "test/acc" in scores[0]


def test_the_documented_command_runs(cli, store, tmp_path):
    documented = [args for where, module, args in commands()
                  if where.startswith("datasets.md") and "dataset=arrays" in args]
    assert documented
    for args in documented:
        given = dict(a.split("=", 1) for a in args if a.startswith("dataset."))
        path = given["dataset.path"]
        arrays = example()
        if given.get("dataset.task") == "regression":
            arrays["y"] = arrays["y"].astype(float)
        if path.endswith(".npz"):
            np.savez(tmp_path / path, **arrays)
        else:
            names = {c: given.get(f"dataset.{c}_column", c) for c in ("id", "step", "target")}
            long_table(arrays).rename(columns=names).to_csv(tmp_path / path, index=False)
        result = cli(*args, *TINY)
        assert result.returncode == 0, (shlex.join(args), result.stderr)


def malformed(folder: Path, case: str) -> list[str]:
    """Write a malformed file for `case`; return the dataset overrides that name it."""
    arrays = example()
    npz = folder / "bad.npz"
    if case == "missing file":
        return ["dataset.path=nowhere.npz"]
    if case == "no path":
        return []
    if case == "unknown suffix":
        (folder / "bad.txt").write_text("1,2\n")
        return ["dataset.path=bad.txt"]
    if case in ("missing column", "target changes", "step twice", "nan feature", "text feature"):
        table = long_table(arrays)
        if case == "missing column":
            table = table.drop(columns="target")
        elif case == "target changes":
            table.loc[1, "target"] = 2
        elif case == "step twice":
            table.loc[1, "step"] = 0
        elif case == "nan feature":
            table.loc[3, "f1"] = np.nan
        else:
            table["f1"] = "a"
        table.to_csv(folder / "bad.csv", index=False)
        return ["dataset.path=bad.csv"]
    if case == "x not 3-D":
        arrays["x"] = arrays["x"][..., 0]
    elif case == "y wrong length":
        arrays["y"] = arrays["y"][:-1]
    elif case == "length past T":
        arrays["lengths"][5] = T + 1
    elif case == "nan at a real step":
        arrays["x"][4, 0, 1] = np.nan
    elif case == "one class only":
        arrays["y"] = np.zeros(N, dtype=int)
    elif case == "test label unseen":
        arrays["y"][-1] = 7
        arrays["split"] = np.array(["train"] * 50 + ["test"] * 10)
    elif case == "unknown split":
        arrays["split"] = np.array(["train"] * 50 + ["tset"] * 10)
    elif case == "object array":
        arrays["y"] = np.array([f"c{v}" for v in arrays["y"]], dtype=object)
        np.savez(npz, **arrays)  # np.savez pickles object arrays
        return ["dataset.path=bad.npz"]
    elif case == "unknown array":
        arrays["lenghts"] = arrays.pop("lengths")
    elif case == "not a zip":
        npz.write_bytes(b"not an archive")
        return ["dataset.path=bad.npz"]
    np.savez(npz, **arrays)
    return ["dataset.path=bad.npz"]


REFUSALS = {
    "missing file": "nowhere.npz: no such file",
    "no path": "path: no file given",
    "unknown suffix": "bad.txt: unknown kind of file .txt",
    "missing column": "bad.csv: no column 'target'",
    "target changes": "bad.csv: column 'target' changes within sequence s0",
    "step twice": "bad.csv: sequence s0 has step 0 twice",
    "nan feature": "bad.csv: x is not a finite number (NaN or inf) at sequence s0, step 3, feature 1",
    "text feature": "bad.csv: column 'f1' must hold numbers",
    "x not 3-D": "bad.npz: x must be [N, T, F]",
    "y wrong length": "bad.npz: y must hold one target per sequence, shape (60,), got (59,)",
    "length past T": "bad.npz: lengths must lie in 1..10 (the steps of x), sequence 5 has 11",
    "nan at a real step": "bad.npz: x is not a finite number (NaN or inf) at sequence 4, step 0, feature 1",
    "one class only": "bad.npz: the training sequences have one class only",
    "test label unseen": "bad.npz: test labels never seen in training: 7",
    "unknown split": "bad.npz: split must give train, val or test for each of the 60 sequences, got ['tset']",
    "object array": "bad.npz: holds an object array (pickled)",
    "unknown array": "bad.npz: unknown arrays lenghts",
    "not a zip": "bad.npz: not an .npz file numpy can read",
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_malformed_file_is_refused_in_one_line_naming_it(tmp_path, case):
    overrides = malformed(tmp_path, case)
    before = sorted(tmp_path.iterdir())
    options = {key.split(".", 1)[1]: str(tmp_path / value) for key, value in (o.split("=", 1) for o in overrides)}
    with pytest.raises(ValueError) as refused:
        ArraysDataModule(**options)
    assert "\n" not in str(refused.value) and REFUSALS[case] in str(refused.value)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["missing file", "missing column", "nan at a real step", "test label unseen"])
def test_the_command_refuses_a_malformed_file_before_any_run_opens(cli, store, tmp_path, case):
    overrides = malformed(tmp_path, case)
    before = sorted(tmp_path.iterdir())
    result = cli("+model=gru", "dataset=arrays", *overrides)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("grubench: error: bad dataset config: ")
    assert REFUSALS[case] in line, line
    assert sorted(tmp_path.iterdir()) == before and runs(store) == []
