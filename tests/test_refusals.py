"""A bad value stops the command with one line and a non-zero exit, before any run opens
(README, "When something is wrong"): through the real command line, for every kind of bad input,
the folder the command ran in and its MLflow store are left exactly as they were."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from grubench.config import choices
from grubench.errors import TrackingError
from grubench.harness.store import Store, check_store
from tests.conftest import run_cli

# (arguments, a word the error line must hold: the setting it names)
CONFIG_REFUSALS = [
    # no model, or a config that does not exist
    ([], "+model=NAME"),
    (["+model=nope"], "model=nope"),
    (["+model=gru", "dataset=nope"], "dataset=nope"),
    (["+model=gru", "optim=sgd"], "optim=sgd"),
    # keys that no part of grubench reads
    (["+model=gru", "epochs=3"], "epochs"),
    (["+model=gru", "model.hiden_size=3"], "model.hiden_size"),
    (["+model=gru", "+foo=bar"], "foo"),
    (["+model=gru", "+tracking.foo=1"], "tracking.foo"),
    # overrides that cannot be read, interpolations that point nowhere
    (["+model=gru", "seed=["], "seed=["),
    (["+model=gru", "claims=[C1"], "claims"),
    (["+model=gru", "seed=${oops}"], "seed"),
    # values of the wrong type
    (["+model=gru", "seed=abc"], "seed"),
    (["+model=gru", "trainer.max_epochs=ten"], "trainer.max_epochs"),
    (["+model=gru", "dataset.batch_size=abc"], "dataset.batch_size"),
    (["+model=gru", "gradient_flow=maybe"], "gradient_flow"),
    (["+model=gru", "tracking.experiment=[a,b]"], "tracking.experiment"),
    # well-typed values that mean nothing
    (["+model=gru", "trainer.max_epochs=0"], "trainer.max_epochs"),
    (["+model=gru", "trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["+model=gru", "trainer.max_steps=0"], "trainer.max_steps"),
    (["+model=gru", "optim.lr=0"], "optim.lr"),
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
    (["+model=gru", "model.hidden_size=0"], "model.hidden_size"),
    (["+model=gru", "model.num_layers=-2"], "model.num_layers"),
    (["+model=gru", "dataset.train_size=0"], "dataset.train_size"),
    (["+model=gru", "dataset.limit=0"], "dataset.limit"),
    (["+model=gru", "claims=[C9]"], "claims"),
    (["+model=gru", "tracking.experiment="], "tracking.experiment"),
    # a sweep: every job is checked before its parent run, store or folder exists
    (["-m", "+model=gru,lstm", "optim.lr=0"], "optim.lr"),
    (["-m", "+model=gru,nope"], "model=nope"),
    (["-m", "+model=gru,lstm", "model.hidden_size=8"], "++model.hidden_size"),
]

# Refusals that come when the run is built or its store reached (torch and MLflow load first).
BUILD_REFUSALS = [
    (["+model=gru", "dataset.seq_len=1"], "seq_len"),
    (["+model=gru", "model.dropout=1.5"], "dropout"),
    (["+model=gru", "trainer.precision=17"], "recision"),
    (["+model=gru", "tracking.uri=http://127.0.0.1:9/"], "tracking.uri"),
    (["+model=gru", "tracking.uri=file:///tmp/runs"], "file:///tmp/runs"),
    (["+model=gru", "tracking.uri=no/such/folder/mlflow.db"], "no/such/folder"),
    (["resume=nope"], "nope"),
    (["resume=nope", "tracking.uri=other.db"], "other.db"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A folder holding an MLflow store with one experiment (making the tables takes seconds)."""
    folder = tmp_path_factory.mktemp("template")
    Store.open(f"sqlite:///{folder / 'mlflow.db'}", "default")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, with a digest of each file's bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refuse(args: list[str], template: Path, where: Path) -> tuple[list[str], str, str, bool]:
    """Run the command in a copy of `template`; (args, stderr, stdout, whether the folder is unchanged)."""
    shutil.copytree(template, where)
    before = snapshot(where)
    result = run_cli(args, cwd=where, timeout=300)
    assert result.returncode != 0, (args, result.stdout, result.stderr)
    return args, result.stderr, result.stdout, snapshot(where) == before


def check_all(cases, template: Path, tmp_path: Path, workers: int = 4) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: refuse(cases[i][0], template, tmp_path / str(i)), range(len(cases))))
    for (args, stderr, stdout, unchanged), (_, names) in zip(results, cases):
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("grubench: error: "), (args, stderr)
        assert names in lines[0], (args, lines[0])
        assert stdout == "", (args, stdout)
        assert unchanged, (args, "the folder or the store changed")


def test_every_bad_config_value_is_refused_in_one_line_leaving_nothing_behind(template, tmp_path):
    assert len(CONFIG_REFUSALS) >= 25
    check_all(CONFIG_REFUSALS, template, tmp_path)


@pytest.mark.slow
def test_values_refused_when_the_run_is_built_leave_nothing_behind(template, tmp_path):
    check_all(BUILD_REFUSALS, template, tmp_path, workers=2)


@pytest.mark.slow
def test_a_tracking_server_that_does_not_answer_is_refused_within_15_seconds(template, tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(TrackingError, match="no MLflow server answers there"):
            check_store(uri)
        assert time.monotonic() - start < 15
        _, stderr, _, unchanged = refuse(["+model=gru", f"tracking.uri={uri}"], template, tmp_path / "job")
    assert len(stderr.strip().splitlines()) == 1 and "tracking.uri" in stderr and unchanged, stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(template, tmp_path):
    check_all([(["+model=gru", "trainer=gpu"], "trainer.accelerator")], template, tmp_path)


def test_a_sweep_checks_a_job_for_every_swept_value():
    from grubench.harness.sweep import covering_jobs

    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        assert covering_jobs(["+model=rnn,gru,lstm", "seed=0,1", "dataset=adding"]) == [
            ["+model=rnn", "seed=0", "dataset=adding"], ["+model=gru", "seed=1", "dataset=adding"],
            ["+model=lstm", "seed=0", "dataset=adding"]]


@pytest.mark.parametrize("preset", ["mnist1d_gru", *[f"{size}/{name}" for size in ("small", "full")
                                                     for name in choices(f"experiment/{size}")]])
def test_every_study_preset_passes_the_sweep_checks(preset):
    from grubench.harness.sweep import check_jobs

    model = ["+model=gru"] if preset == "mnist1d_gru" else []
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        check_jobs(compose(config_name="config", overrides=[f"+experiment={preset}", *model], return_hydra_config=True))
