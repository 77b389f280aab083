"""A refused input stops the command with one line, `prog: error: ...`, and a non-zero exit,
before anything is created (README, "When something is wrong"): through each command's real entry
point, for every kind of bad input, the folder the command ran in and its MLflow store are left
exactly as they were."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

from tests.cli import command

# (module, arguments, what the error line must hold: the setting it names, or its words)
MAIN = [
    # no model, or a config that does not exist
    ([], "no model chosen: add +model=NAME, one of: gru, "),
    (["+model=nope"], "model=nope: no such model config"),
    (["+model=gru", "dataset=nope"], "dataset=nope: no such dataset config"),
    (["+model=gru", "optim=sgd"], "optim=sgd"),
    # keys that no part of grubench reads
    (["+model=gru", "epochs=3"], "epochs"),
    (["+model=gru", "model.hiden_size=3"], "model.hiden_size"),
    (["+model=gru", "+foo=bar"], "foo: no such setting"),
    (["+model=gru", "+tracking.foo=1"], "tracking.foo"),
    # overrides that cannot be read, interpolations that point nowhere
    (["+model=gru", "seed=["], "seed=["),
    (["+model=gru", "claims=[C1"], "claims"),
    (["+model=gru", "seed=${oops}"], "seed"),
    # values of the wrong type
    (["+model=gru", "seed=abc"], "seed='abc': must be an integer"),
    (["+model=gru", "trainer.max_epochs=ten"], "trainer.max_epochs"),
    (["+model=gru", "dataset.batch_size=abc"], "dataset.batch_size"),
    (["+model=gru", "gradient_flow=maybe"], "gradient_flow"),
    (["+model=gru", "tracking.experiment=[a,b]"], "tracking.experiment"),
    # well-typed values that mean nothing
    (["+model=gru", "trainer.max_epochs=0"], "trainer.max_epochs=0: must be a positive integer"),
    (["+model=gru", "trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["+model=gru", "trainer.max_steps=0"], "trainer.max_steps"),
    (["+model=gru", "optim.lr=0"], "optim.lr=0: must be a positive number"),
    (["+model=gru", "optim.lr=-0.1"], "optim.lr"),
    (["+model=gru", "optim.weight_decay=-1"], "optim.weight_decay"),
    (["+model=gru", "threads=0"], "threads"),
    (["+model=gru", "early_stopping.patience=0"], "early_stopping.patience"),
    (["+model=gru", "early_stopping.stopping_threshold=low"], "early_stopping.stopping_threshold"),
    (["+model=gru", "trainer.limit_train_batches=0"], "trainer.limit_train_batches"),
    (["+model=gru", "trainer.limit_val_batches=1.5"], "trainer.limit_val_batches"),
    (["+model=gru", "trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
    (["+model=gru", "trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
    (["+model=gru", "trainer.devices=0"], "trainer.devices"),
    (["+model=gru", "model.hidden_size=0"], "model.hidden_size=0: must be a positive integer"),
    (["+model=gru", "model.num_layers=-2"], "model.num_layers"),
    (["+model=gru", "dataset.train_size=0"], "dataset.train_size"),
    (["+model=gru", "dataset.batch_size=-4"], "dataset.batch_size=-4: must be a positive integer"),
    (["+model=gru", "dataset=copy", "dataset.seq_len=0"], "dataset.seq_len=0: must be a positive integer"),
    (["+model=gru", "dataset.limit=0"], "dataset.limit"),
    (["+model=gru", "claims=[C9]"], "claims"),
    (["+model=gru", "tracking.experiment="], "tracking.experiment"),
    # values outside what numpy and torch take, whatever the setting
    (["+model=gru", "seed=-1"], "seed=-1: must be a seed numpy takes"),
    (["+model=gru", "seed=99999999999"], "seed=99999999999: must be a seed numpy takes"),
    (["+model=gru", "dataset.batch_size=100000000000000000000"], "dataset.batch_size=100000000000000000000: must be "
                                                                 "an integer torch can hold"),
    (["+model=gru", "optim.lr=1e400"], "optim.lr=inf: must be a finite number"),
    (["+model=gru", "optim.lr=nan"], "optim.lr=nan: must be a finite number"),
    (["+model=gru", "trainer.gradient_clip_val=inf"], "trainer.gradient_clip_val=inf: must be a finite number"),
    (["+model=gru", "threads=1000000000"], "threads=1000000000: must be at most the"),
    # a sweep: every job is checked before its parent run, store or folder exists
    (["-m", "+model=gru,lstm", "optim.lr=0"], "optim.lr"),
    (["-m", "+model=gru,nope"], "model=nope"),
    (["-m", "+model=gru,lstm", "model.hidden_size=8"], "++model.hidden_size"),
    (["-m", "+model=gru", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "seed=0,1"],
     "a sweep (-m) runs each job on one device, but trainer.devices=2 asks for 2"),
]

# Refused when the run is built or its store reached (torch and MLflow are loaded by then).
BUILT = [
    (["+model=gru", "dataset.seq_len=1"], "the adding problem needs seq_len >= 2"),
    (["+model=gru", "model.dropout=1.5"], "dropout"),
    (["+model=gru", "model.init=jax"], "init must be 'torch' or 'keras'"),
    (["+model=gru", "trainer.precision=fp7"], "bad trainer config: Precision 'fp7' is invalid"),
    (["+model=gru", "tracking.uri=http://127.0.0.1:9/"], "tracking.uri"),
    (["+model=gru", "tracking.uri=file:///tmp/runs"], "file:///tmp/runs"),
    (["+model=gru", "tracking.uri=no/such/folder/mlflow.db"], "directory"),
    (["+model=gru", "tracking.uri=/proc/mlflow.db"], "cannot create MLflow store /proc/mlflow.db"),
    (["+model=gru", f"tracking.uri=/tmp/{'x' * 300}.db"], "file name too long"),
    (["+model=gru", "model.hidden_size=100000"], "parameters need about"),
    (["+model=gru", "dataset.seq_len=9999999999999"], "the data set needs about"),
    (["+model=gru", "dataset=uea", "dataset.name=JapaneseVowels", "gradient_flow=[0]"], "measured on sequences of one length"),
    (["+model=gru", "model.bidirectional=true", "gradient_flow=[0]"], "for one direction only"),
    (["resume=nope"], "nope"),
    (["resume=nope", "tracking.uri=other.db"], "other.db"),
    (["-m", "hydra/sweeper=grubench_optuna", "+model=gru", "seed=0,1",
      "++hydra.sweeper.params={optim.lr:{type:float,low:0.001,high:0.1}}"],
     "seed=0,1: a search takes its choices from hydra.sweeper.params"),
    (["-m", "hydra/sweeper=grubench_optuna", "+model=gru"], "the search space is empty"),
    (["-m", "hydra/sweeper=grubench_optuna", "+model=gru", "optim.lr=0.1",
      "++hydra.sweeper.params={optim.lr:{type:float,low:0.001,high:0.1}}"], "optim.lr is in the search space"),
    (["-m", "hydra/sweeper=grubench_optuna", "+model=gru",
      "++hydra.sweeper.params={dataset:{type:categorical,choices:[adding,copy]}}"],
     "choose the dataset outside the search space"),
    (["-m", "hydra/sweeper=grubench_optuna", "+model=gru",
      "++hydra.sweeper.params={optim.lr:{type:uniform,low:0,high:1}}"], "type must be float, int or categorical"),
]
BUILT += [  # a study: every job is composed and checked before its parent run, store or folder exists
    (["-m", "hydra/sweeper=study", "hydra.sweeper.presets=[c3_cost]", "seed=0,1"],
     "seed=0,1: a study sweeps its presets' own values"),
    (["-m", "hydra/sweeper=study", "hydra.sweeper.presets=[c3_cost]", "optim.lr=0"], "optim.lr=0: must be a positive"),
    (["-m", "hydra/sweeper=study", "hydra.sweeper.presets=[nope]"], "experiment/full=nope: no such experiment/full config"),
]
if not torch.cuda.is_available():
    BUILT.append((["+model=gru", "trainer=gpu"], "trainer.accelerator"))

# The other commands: (module, arguments, words)
OTHERS = [
    ("grubench.report", ["tracking.uri=none.db"], "no MLflow store"),
    ("grubench.report", ["none.db"], "give the store as tracking.uri=STORE"),
    ("grubench.harness.reap", ["tracking.uri=none.db"], "no MLflow store"),
    ("grubench.harness.reap", ["none.db"], "give the store as tracking.uri=STORE"),
    ("grubench.gradflow", ["--models", "nope"], "no model config 'nope'"),
    ("grubench.gradflow", ["dataset.seq_len=1"], "the adding problem needs seq_len >= 2"),
    ("grubench.bench", ["grid=nope"], "grid=nope: no such grid config"),
    ("grubench.bench", ["nosuchkey=1"], "nosuchkey: no such setting"),
    ("grubench.bench.overhead", ["trainer.limit_train_batches=0.5"], "whole numbers of batches"),
]

CASES = [("grubench", args, words) for args, words in MAIN + BUILT] + OTHERS


@pytest.fixture(scope="module")
def template(tmp_path_factory, empty_store) -> Path:
    """A folder holding an MLflow store with one experiment."""
    folder = tmp_path_factory.mktemp("folder")
    shutil.copy(empty_store, folder / "mlflow.db")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, with a digest of each file's bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refused(module: str, args: list[str], words: str, where: Path) -> None:
    before = snapshot(where)
    started = time.monotonic()
    result = command(module, args, where)
    prog = module.removesuffix(".__main__")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (args, result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (args, result.stderr[-2000:])
    assert words in lines[0], (args, lines[0])
    assert result.stdout == "", (args, result.stdout)
    assert snapshot(where) == before, (args, "the folder or the store changed")
    assert time.monotonic() - started < 30, (args, "took more than seconds")


@pytest.mark.parametrize("module, args, words", CASES, ids=[" ".join([m.split(".")[-1], *a])[:80] for m, a, _ in CASES])
def test_a_refused_input_is_one_line_and_leaves_nothing_behind(template, tmp_path, module, args, words):
    shutil.copytree(template, tmp_path / "folder")
    refused(module, args, words, tmp_path / "folder")


def test_a_tracking_server_that_does_not_answer_is_refused_within_15_seconds(template, tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        shutil.copytree(template, tmp_path / "folder")
        start = time.monotonic()
        refused("grubench", ["+model=gru", f"tracking.uri=http://127.0.0.1:{silent.getsockname()[1]}"],
                "no MLflow server answers there", tmp_path / "folder")
        assert time.monotonic() - start < 15


def test_a_sweep_checks_a_job_for_every_swept_value():
    from hydra import initialize_config_module

    from grubench.harness.sweep import covering_jobs

    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        assert covering_jobs(["+model=rnn,gru,lstm", "seed=0,1", "dataset=adding"]) == [
            ["+model=rnn", "seed=0", "dataset=adding"], ["+model=gru", "seed=1", "dataset=adding"],
            ["+model=lstm", "seed=0", "dataset=adding"]]


def study_presets() -> list[str]:
    from grubench.config import choices

    return ["mnist1d_gru", *[f"{size}/{name}" for size in ("small", "full") for name in choices(f"experiment/{size}")]]


@pytest.mark.parametrize("preset", study_presets())
def test_every_study_preset_passes_the_sweep_checks(preset):
    from hydra import compose, initialize_config_module

    from grubench.harness.sweep import check_jobs

    model = ["+model=gru"] if preset == "mnist1d_gru" else []
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        check_jobs(compose(config_name="config", overrides=[f"+experiment={preset}", *model], return_hydra_config=True))
