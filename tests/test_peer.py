"""The peer benchmark (`python -m grubench.peer`): refusals in one line, and with the extra
installed (keras, jax) both sides' whole runs on the same data, timed and scored."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from tests.cli import command

TINY = ["dataset.train_size=128", "dataset.val_size=64", "dataset.test_size=64", "trainer.max_epochs=2",
        "model.hidden_size=8"]


def test_without_the_extra_it_says_what_to_install(tmp_path, monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("keras", "jax") else found(name, *a))
    result = command("grubench.peer", ["--pairs", "1"], tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == ("grubench.peer: error: the peer benchmark needs keras and jax: "
                                     "pip install 'grubench[peer]'")


@pytest.mark.parametrize("args, words", [
    (["--model", "janet"], "--model 'janet': the peer benchmark runs gru, lstm, rnn"),
    (["dataset=copy"], "dataset copy: the peer benchmark compares test MSE, on regression tasks"),
    (["model.num_layers=2"], "one unidirectional layer"),
    (["--pairs", "0"], "--pairs must be at least 1, got 0"),
    (["--threads", "4"], "--threads must be 1 or null, got '4'"),
])
def test_it_refuses_work_it_cannot_compare(tmp_path, args, words):
    if importlib.util.find_spec("keras") is None and "--pairs" not in args and "--threads" not in args:
        pytest.skip("the extra [peer] is not installed: the refusal comes after the check for it")
    result = command("grubench.peer", [*args, "--out", str(tmp_path / "peer")], tmp_path)
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith("grubench.peer: error: ") and words in line


@pytest.mark.slow
def test_both_sides_train_the_same_data_and_are_timed_and_scored(tmp_path):
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("the extra [peer] (keras, jax) is not installed")
    result = command("grubench.peer", ["--pairs", "2", "--out", str(tmp_path / "peer"), *TINY], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "peer" / "peer.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["pair"], r["system"]) for r in rows] == [("1", "grubench"), ("1", "keras"), ("2", "keras"),
                                                        ("2", "grubench")]
    assert all(float(r["cpu_s"]) > 0 and float(r["wall_s"]) > 0 and 0 < float(r["test_mse"]) < 1 for r in rows)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("grubench (model.init=torch, threads=1) / Keras 3 on JAX, median of 2 pairs: CPU ")
    assert "test MSE grubench" in last
