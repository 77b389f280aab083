"""dataset=uea: UCR/UEA problems bundled with aeon by name, others from a local archive folder,
never a download; the archive's split kept, normalisation fitted on training cases only; a
bundled problem trains end to end."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest
import torch

from grubench.data import UEADataModule
from grubench.data import uea
from tests.conftest import TINY, runs
from tests.test_doc_commands import commands


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def vowels():
    module = UEADataModule("JapaneseVowels")
    module.setup()
    return module


def test_the_sets_aeon_bundles_are_found_by_name():
    names = uea.bundled()
    assert {"JapaneseVowels", "BasicMotions", "GunPoint", "ArrowHead", "ItalyPowerDemand"} <= set(names)
    assert "Covid3Month" not in names  # a regression problem


def test_japanese_vowels_keeps_the_archive_split_and_its_unequal_lengths(vowels, offline):
    spec = vowels.spec
    assert (spec.name, spec.input_size, spec.num_outputs, spec.seq_len) == ("JapaneseVowels", 12, 9, 29)
    assert spec.chance["acc"] == pytest.approx(1 / 9)  # balanced training classes
    sizes = vowels.split_sizes()
    assert sizes["train"] + sizes["val"] == 270 and sizes["test"] == 370 and sizes["val"] == 54
    stats = vowels.describe()
    assert (stats["classes"], stats["channels"], stats["test/min_length"], stats["test/max_length"]) == (9, 12, 7, 29)
    x, y, mask = vowels.splits["train"]
    assert torch.bincount(y).tolist() == [24] * 9  # validation drawn per class: 6 of each 30
    real = x[mask]
    torch.testing.assert_close(real.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(real.std(0, unbiased=False), torch.ones(12), atol=1e-5, rtol=0)
    test_x, _, test_mask = vowels.splits["test"]
    assert test_x[test_mask].mean(0).abs().max() > 1e-3  # fitted on train: the test set is not exactly centred
    assert (x[~mask] == 0).all() and vowels.unequal_lengths()
    other = UEADataModule("JapaneseVowels", split_seed=1)
    assert not np.array_equal(other.index["val"], vowels.index["val"])
    assert np.array_equal(other.index["test"], vowels.index["test"])


def test_an_equal_length_set_has_no_mask(offline):
    module = UEADataModule("GunPoint", limit=8)
    module.setup()
    assert len(module.splits["train"]) == 2 and module.spec.seq_len == 150 and not module.unequal_lengths()


def test_a_local_archive_folder_is_read_before_the_bundled_copy(tmp_path, offline):
    unit = uea.bundled()["UnitTest"]
    (tmp_path / "MyProblem").mkdir()
    for split in ("TRAIN", "TEST"):
        shutil.copy(unit / f"UnitTest_{split}.ts", tmp_path / "MyProblem" / f"MyProblem_{split}.ts")
        shutil.copy(unit / f"UnitTest_{split}.ts", tmp_path / f"GunPoint_{split}.ts")  # the folder's top
    mine = UEADataModule("MyProblem", data_dir=str(tmp_path))
    assert mine.folder == tmp_path / "MyProblem" and mine.spec.num_outputs == 2 and mine.spec.seq_len == 24
    assert UEADataModule("GunPoint", data_dir=str(tmp_path)).spec.seq_len == 24  # not the bundled 150


def test_a_malformed_or_regression_file_is_refused(tmp_path):
    covid = uea.aeon_data_dir() / "Covid3Month"
    for split in ("TRAIN", "TEST"):
        shutil.copy(covid / f"Covid3Month_{split}.ts", tmp_path / f"Covid_{split}.ts")
    with pytest.raises(ValueError, match="Covid_TRAIN.ts: not a classification problem"):
        UEADataModule("Covid", data_dir=str(tmp_path))
    (tmp_path / "Broken_TRAIN.ts").write_text("@problemName broken\n@classLabel true a b\n@data\n1,2,3:a\nnonsense\n")
    (tmp_path / "Broken_TEST.ts").write_text("@problemName broken\n@classLabel true a b\n@data\n1,2,3:a\n")
    with pytest.raises(ValueError, match=r"Broken_TRAIN.ts: aeon cannot read it"):
        UEADataModule("Broken", data_dir=str(tmp_path))


def test_a_set_neither_bundled_nor_in_the_folder_is_refused_in_one_line(cli, store, tmp_path, offline):
    result = cli("+model=gru", "dataset=uea", "dataset.name=Heartbeat", f"dataset.data_dir={tmp_path / 'archive'}")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "name=Heartbeat: not bundled with aeon" in line
    assert f"put Heartbeat_TRAIN.ts and Heartbeat_TEST.ts in {tmp_path / 'archive' / 'Heartbeat'}" in line
    assert runs(store) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_the_documented_bundled_commands_train_end_to_end(cli, store, offline):
    documented = [args for where, module, args in commands()
                  if where.startswith("datasets.md") and "dataset=uea" in args and "dataset.data_dir" not in " ".join(args)]
    assert len(documented) >= 2
    for args in documented:
        result = cli(*args, *TINY)
        assert result.returncode == 0, result.stderr
    finished = runs(store)
    assert {r.info.status for r in finished} == {"FINISHED"} and len(finished) == len(documented)
    vowels = next(r for r in finished if r.data.tags["dataset"] == "JapaneseVowels")
    tags = vowels.data.tags
    assert (tags["data/classes"], tags["data/channels"], tags["data/test/max_length"]) == ("9", "12", "29")
    assert "test/acc" in vowels.data.metrics
