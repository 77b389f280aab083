"""Sweeps at scale: parallel jobs on one SQLite store, an Optuna search that resumes, submitit, SLURM config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from grubench.errors import ConfigError
from grubench.harness import reap
from grubench.harness.search import counted, distribution, override, recover_interrupted
from tests.cli import main_command
from tests.conftest import TINY_SWEEP, run_cli, runs

# Every metric a tiny run records.
METRICS = {"train/loss", "train/mse", "val/loss", "val/mse", "test/loss", "test/mse", "params/total",
           "speed/step_ms", "speed/train_samples_per_s", "speed/epoch_s", "mem/peak_mb", "epoch"}

# A search over a learning rate that sometimes diverges (1e30: those trials fail) and a width.
SEARCH = ["hydra/sweeper=grubench_optuna", "+model=gru", "trainer=debug", "dataset.limit=64", "dataset.batch_size=16",
          "hydra.sweeper.study_name=test", "hydra.sweeper.seed=3", "tracking.experiment=search",
          "++hydra.sweeper.params={optim.lr:{type:categorical,choices:[0.003,0.03,1e30]},"
          "model.hidden_size:{type:int,low:4,high:16}}"]

# The search, killed (SIGKILL) in the middle of the training of its fifth trial.
KILL_TRIAL_4 = """
import os, signal
from hydra.core.hydra_config import HydraConfig
from grubench.task import SequenceTask
step = SequenceTask.training_step
def training_step(self, batch, batch_idx):
    if HydraConfig.get().job.num == 4 and batch_idx == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, batch_idx)
SequenceTask.training_step = training_step
from grubench.__main__ import main
main()
"""


def children(uri: str, experiment: str = "default"):
    found = runs(uri, experiment)
    (parent,) = [r for r in found if r.data.tags.get("sweep") == "parent"]
    return parent, [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.mark.slow
def test_four_parallel_joblib_jobs_on_one_fresh_store_lose_no_run_and_no_metric(tmp_path):
    result = run_cli(["-m", "+model=gru", *TINY_SWEEP, "seed=0,1,2,3", "hydra/launcher=joblib",
                      "hydra.launcher.n_jobs=4", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # a quiet terminal: no MLflow notice from the parent making the store, and one browse hint
    assert "database tables" not in result.stdout + result.stderr
    assert result.stdout.count("gru on adding: test/mse") == 4 and result.stdout.count("then open") == 1
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent, jobs = children(uri)
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["seed"] for r in jobs) == ["0", "1", "2", "3"]
    assert len({r.data.tags["pid"] for r in jobs}) > 1  # they did run in several processes
    client = MlflowClient(uri)
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert METRICS <= set(run.data.metrics), METRICS - set(run.data.metrics)
        assert len(client.get_metric_history(run.info.run_id, "val/mse")) == 1
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 1


@pytest.mark.slow
def test_optuna_search_killed_in_its_fifth_trial_resumes_to_six(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", *SEARCH, "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={tmp_path / 'search'}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    killed = subprocess.run([sys.executable, "-c", KILL_TRIAL_4, *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    study = optuna.load_study(study_name="test", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials][4] == "RUNNING" and counted(study) == 4

    resumed = main_command(args, tmp_path)
    assert "trials [4] were interrupted" in resumed.stdout, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [c.status for c in reap.collect(uri)] == ["FAILED"]  # the run the kill left RUNNING

    study = optuna.load_study(study_name="test", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert counted(study) == 6 and len(study.trials) == 7
    assert study.trials[5].params == study.trials[4].params  # the interrupted values ran again first
    parent, trials = children(uri, "search")
    assert parent.info.status == "FINISHED"
    by_job = {int(r.data.tags["sweep/job"]): r for r in trials}
    assert sorted(by_job) == [0, 1, 2, 3, 4, 5, 6]
    assert by_job[4].info.status == "FAILED" and "ended without closing the run" in by_job[4].data.tags["error"]
    for number in (0, 1, 2, 3, 5, 6):
        want = "COMPLETE" if study.trials[number].params["optim.lr"] < 1 else "FAIL"
        assert study.trials[number].state.name == want
        assert by_job[number].info.status == {"COMPLETE": "FINISHED", "FAIL": "FAILED"}[want]
    assert any(t.state.name == "FAIL" for t in study.trials[:4] + study.trials[5:])  # the search went on past one

    client = MlflowClient(uri)
    best_of_run = {n: min(m.value for m in client.get_metric_history(r.info.run_id, "val/mse"))
                   for n, r in by_job.items() if r.info.status == "FINISHED"}
    lowest = min(best_of_run.values())
    assert float(parent.data.tags["best/value"]) == pytest.approx(lowest) == study.best_value
    assert best_of_run[int(parent.data.tags["best/trial"])] == lowest  # the trial named is one that reached it
    assert parent.data.tags["best/params/optim.lr"] == str(study.best_trial.params["optim.lr"])
    assert (tmp_path / "search" / "best_trial.yaml").is_file()


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep_job(tmp_path):
    result = main_command(["-m", "+model=rnn", *TINY_SWEEP, "seed=0", "hydra/launcher=submitit_local",
                           "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    parent, jobs = children(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [r.info.status for r in jobs] == ["FINISHED"] and parent.info.status == "FINISHED"
    assert all(METRICS <= set(r.data.metrics) for r in jobs)


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+model=gru", "hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.max_num_timeout, launcher.timeout_min) == (1, 0, 240)


@pytest.mark.parametrize("spec, message", [
    ({"type": "float", "low": 1.0}, "float needs high"),
    ({"type": "uniform", "low": 0, "high": 1}, "type must be float, int or categorical"),
    ({"type": "int", "low": 1, "high": 8, "logg": True}, "unknown keys ['logg']"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "low"),  # log needs low > 0
    ({"type": "categorical"}, "categorical needs choices"),
])
def test_bad_search_space_entries_are_named(spec, message):
    with pytest.raises(ConfigError, match="hydra.sweeper.params.x: ") as error:
        distribution("x", spec)
    assert message in str(error.value)


def test_search_space_entries_make_optuna_distributions():
    assert distribution("lr", {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}).log
    assert distribution("h", {"type": "int", "low": 16, "high": 128, "step": 16}).step == 16
    assert distribution("+model", {"type": "categorical", "choices": ["gru", "lstm"]}).choices == ("gru", "lstm")
    assert override("+model", "gru") == "+model=gru"
    assert override("optim.lr", 0.001) == "optim.lr=0.001"
    assert override("run_name", "a b") == "run_name='a b'"


def test_trials_a_dead_search_left_running_are_recorded_and_queued_again(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    space = {"x": distribution("x", {"type": "float", "low": 0, "high": 1})}
    done = study.ask(space)
    study.tell(done, 0.5)
    left = study.ask(space)  # its search died here
    assert recover_interrupted(study) == [left.number]
    assert study.trials[left.number].state.name == "FAIL" and counted(study) == 1
    again = study.ask(space)
    assert again.params == left.params and again.user_attrs["retry_of"] == left.number
