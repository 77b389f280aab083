"""One house for the harness: a run's life has one owner, stores survive concurrent starts, every
run has its own folder, configs can come from a user's folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grubench.errors import Interrupted, RunFailed
from grubench.harness.runs import tracked_run
from grubench.harness.store import Run, Store, resolve_uri
from grubench.train import train
from tests.cli import main_command
from tests.conftest import TINY, compose_config, runs

ROOT = Path(__file__).resolve().parents[1]


def statuses(uri: str, experiment: str = "default") -> list[str]:
    return sorted(r.info.status for r in runs(uri, experiment))


def start_cli(args: list[str], cwd: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "grubench", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("raised, status, error", [
    (ValueError("bad value"), "FAILED", "ValueError: bad value"),
    (KeyboardInterrupt(), "KILLED", "interrupted (Ctrl-C or SIGTERM)"),
    (SystemExit(1), "KILLED", "interrupted (exit 1)"),
])
def test_tracked_run_closes_the_run_whatever_ends_the_block(store, raised, status, error):
    opened = Store.open(store, "default")
    with pytest.raises(Interrupted if status == "KILLED" else type(raised)) as ended:
        with tracked_run(opened, "a run") as run:
            raise raised
    (found,) = runs(store)
    assert (found.info.status, found.data.tags["error"]) == (status, error)
    assert found.info.run_id == run.id
    if status == "KILLED":  # the command says which run it left KILLED
        assert ended.value.run_id == run.id and ended.value.__cause__ is raised


def test_tracked_run_finishes_and_reopens(store):
    opened = Store.open(store, "default")
    with tracked_run(opened, "a run", {"model": "gru"}) as run:
        run.log_metrics({"x": 1.0})
    with tracked_run(opened, reopen=run.id) as again:
        assert again.info().info.status == "RUNNING"
    (found,) = runs(store)
    assert found.info.status == "FINISHED" and found.data.tags["model"] == "gru"


def test_a_run_whose_artifact_logging_fails_ends_failed_with_that_error(store, monkeypatch):
    def full_disk(self, path, folder=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Run, "log_artifact", full_disk)
    with pytest.raises(RunFailed, match="No space left on device"):
        train(compose_config(["+model=gru", *TINY, f"tracking.uri={store}"]))
    (run,) = runs(store)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["error"]


def raise_inside(monkeypatch, target: str) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(target, broken)


@pytest.mark.parametrize("entry_point", ["gradflow", "bench", "overhead", "report"])
def test_each_entry_points_run_ends_closed_when_its_body_raises(tmp_path, store, monkeypatch, entry_point):
    uri = store
    if entry_point == "gradflow":
        from grubench.gradflow.__main__ import record
        from grubench.gradflow.measure import FlowCurve

        raise_inside(monkeypatch, "grubench.gradflow.__main__.write_csv")
        curve = FlowCurve(model="rnn", stage="init", steps=[1, 2], norms=[1.0, 2.0])
        call = lambda: record([curve], [f"tracking.uri={uri}"], tmp_path)
        experiment = "gradient_flow"
    elif entry_point == "bench":
        from hydra import compose, initialize_config_module

        from grubench.bench.__main__ import bench

        raise_inside(monkeypatch, "grubench.bench.__main__.run_grid")
        with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
            cfg = compose(config_name="bench", overrides=["grid=tiny", f"tracking.uri={uri}",
                                                          f"output_dir={tmp_path / 'bench'}"])
        call = lambda: bench(cfg)
        experiment = "bench"
    elif entry_point == "report":
        from grubench.report.__main__ import write_report

        raise_inside(monkeypatch, "grubench.harness.store.Run.log_artifact")  # its body logs the report's files
        call = lambda: write_report(uri, tmp_path / "report")
        experiment = "report"
    else:
        from grubench.bench.overhead import harness_trial

        raise_inside(monkeypatch, "pytorch_lightning.Trainer.fit")
        cfg = compose_config(["+model=gru", *TINY, f"tracking.uri={uri}", "tracking.experiment=overhead"])
        call = lambda: harness_trial(cfg, resolve_uri(uri))
        experiment = "overhead"
    with pytest.raises(RuntimeError, match="broken on purpose"):
        call()
    found = runs(uri, experiment)
    assert found and all(r.info.status == "FAILED" for r in found), [(r.info.status, r.data.tags) for r in found]
    assert all("broken on purpose" in r.data.tags["error"] for r in found)


@pytest.mark.slow
def test_four_commands_at_once_on_a_new_store_all_finish_in_folders_of_their_own(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["+model=rnn", *TINY, f"tracking.uri={uri}", "tracking.log_checkpoint=false"]
    started = [start_cli([*args, f"seed={seed}"], tmp_path) for seed in range(4)]
    for process in started:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    assert statuses(uri) == ["FINISHED"] * 4
    folders = sorted(p.parent for p in tmp_path.glob("outputs/*/*/config.yaml"))
    assert len(folders) == 4  # started in the same second, each its own folder, log and checkpoints
    assert len({(f / "config.yaml").read_text() for f in folders}) == 4  # each folder holds its own run's config
    fifth = main_command([*args, "seed=4"], tmp_path)
    assert fifth.returncode == 0, fifth.stderr[-2000:]
    assert statuses(uri) == ["FINISHED"] * 5
    assert not list(tmp_path.glob("_alembic_tmp*")) and not list(tmp_path.glob("*.partial"))


def test_a_launcher_that_fails_leaves_no_running_run(tmp_path, cli, store):
    result = cli("-m", "+model=rnn", *TINY, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("grubench: error: the sweep stopped: ValueError: n_jobs") and "is recorded FAILED" in line
    (parent,) = runs(store)
    assert parent.info.status == "FAILED"
    assert "n_jobs" in parent.data.tags["error"]


@pytest.mark.slow
def test_ctrl_c_on_a_parallel_sweep_leaves_no_running_run(tmp_path, fresh_store):
    # A store made beforehand (polling a store the sweep is still making would race its
    # migration), and jobs of minutes: the Ctrl-C must land while both train.
    uri = fresh_store
    sweep = start_cli(["-m", "+model=gru", "++model.hidden_size=8", "dataset.limit=4096", "trainer.max_epochs=50",
                       "seed=0,1", f"tracking.uri={uri}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, start_new_session=True,
                      # as from a terminal: a shell's background job (CI's, say) inherits SIGINT ignored
                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while len([r for r in runs(uri) if "mlflow.parentRunId" in r.data.tags]) < 2:  # both jobs are training
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-2000:]
        time.sleep(1)
    time.sleep(3)
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    sweep.communicate(timeout=120)
    assert sweep.returncode != 0
    found = runs(uri)
    assert len(found) == 3 and "RUNNING" not in {r.info.status for r in found}, \
        [(r.info.status, r.data.tags.get("error")) for r in found]
    (parent,) = [r for r in found if r.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "KILLED"


SEARCH = ["hydra/sweeper=grubench_optuna", "+model=gru", "trainer=debug", "dataset.limit=64",
          "hydra.sweeper.study_name=shared", "tracking.experiment=search",
          "++hydra.sweeper.params={optim.lr:{type:float,low:0.001,high:0.01}}"]


@pytest.mark.slow
def test_two_searches_on_one_study_do_not_corrupt_each_other(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = start_cli(["-m", *SEARCH, "hydra.sweeper.n_trials=2", "trainer.max_epochs=30", "dataset.limit=256",
                       f"hydra.sweep.dir={tmp_path / 'first'}"], tmp_path)
    deadline = time.monotonic() + 240
    while not [r for r in runs(uri, "search") if "mlflow.parentRunId" in r.data.tags]:  # its first trial trains
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.5)
    second = main_command(["-m", *SEARCH, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'second'}"],
                          tmp_path)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith("grubench: error: study shared is being searched")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert sorted(r.info.status for r in runs(uri, "search")) == ["FINISHED"] * 3  # a parent, two trials: none from the refusal


def test_a_model_config_in_a_users_folder_is_found(tmp_path, cli, store):
    mine = tmp_path / "my_conf" / "model"
    mine.mkdir(parents=True)
    (mine / "my_gru.yaml").write_text("defaults:\n  - _base\n  - _self_\n\nname: my_gru\n"
                                      "recurrent:\n  _target_: torch.nn.GRU\n  _partial_: true\n")
    refused = cli("--config-dir", str(tmp_path / "my_conf"))
    assert refused.returncode == 1 and "my_gru" in refused.stderr
    result = cli("--config-dir", str(tmp_path / "my_conf"), "+model=my_gru", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = runs(store)
    assert run.data.tags["model"] == "my_gru" and run.data.params["model/hidden_size"] == "8"


def test_a_best_checkpoint_rebuilds_its_model_with_nothing_else_given(store, tmp_path):
    from grubench.task import SequenceTask

    train(compose_config(["+model=lstm", *TINY, f"tracking.uri={store}", f"hydra.run.dir={tmp_path}"]))
    (run,) = runs(store)
    best = Path(run.data.tags["checkpoint_dir"]) / "best.ckpt"
    task = SequenceTask.load_from_checkpoint(best, weights_only=True)
    assert task.model.name == "lstm" and task.model.hidden_size == 8
    assert task.spec.name == "adding"


def test_no_private_attributes_of_lightning_or_mlflow_in_src():
    import re

    private = re.compile(r"\b(?:logger|client|experiment|_mlflow_client|trainer|self)\._(?:mlflow_client|run_id|"
                         r"experiment_id|initialized|tracking_uri)\b")
    hits = [f"{p}:{i}" for p in (ROOT / "src").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert hits == []


def test_help_answers_before_torch_lightning_or_mlflow_load():
    code = ("import sys, runpy; sys.argv = ['grubench', '--help']\n"
            "try:\n    runpy.run_module('grubench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-2000:] + result.stderr[-2000:]
