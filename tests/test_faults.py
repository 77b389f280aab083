"""Faults a run survives: kill -9 and resume, dead runs closed by gc, NaN loss, out of memory, DDP."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from grubench.errors import ConfigError, RunFailed
from grubench.harness import reap
from grubench.harness import resume as resuming
from grubench.harness.provenance import environment_tags
from grubench.harness.store import Store
from grubench.train import train
from tests.cli import command, main_command
from tests.conftest import compose_config, run_cli, runs

# Four epochs of six batches: a kill in epoch 2 lands after two resume points.
SHORT = ["+model=gru", "model.hidden_size=8", "dataset.limit=96", "dataset.batch_size=16", "dataset.seq_len=20",
         "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]
TIMED = ("speed/", "mem/")  # measured, so never equal between two runs

# `python -m grubench` that SIGKILLs itself at one training batch, from outside the harness.
KILL_AT = """
import os, signal, sys
from grubench.task import SequenceTask
step = SequenceTask.training_step
def training_step(self, batch, batch_idx):
    if self.current_epoch == {epoch} and batch_idx == {batch}:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, batch_idx)
SequenceTask.training_step = training_step
from grubench.__main__ import main
main()
"""


def history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(uri)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in client.get_run(run_id).data.metrics}


def run_killed_at(epoch: int, batch: int, args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", KILL_AT.format(epoch=epoch, batch=batch), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_gc_then_resume_matches_an_uninterrupted_run(tmp_path, fresh_store, empty_store):
    whole_store = f"sqlite:///{tmp_path / 'whole.db'}"
    shutil.copy(empty_store, tmp_path / "whole.db")
    assert train(compose_config([*SHORT, f"tracking.uri={whole_store}"])) is not None
    (whole,) = runs(whole_store)

    killed = run_killed_at(2, 3, [*SHORT, f"tracking.uri={fresh_store}", f"hydra.run.dir={tmp_path / 'job'}"],
                           cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run,) = runs(fresh_store)
    assert run.info.status == "RUNNING"  # nobody closed it
    assert (tmp_path / "job" / "checkpoints" / "last.ckpt").is_file()
    assert not list((tmp_path / "job" / "checkpoints").glob(".*partial"))

    changes = reap.collect(fresh_store)
    assert [(c.run_id, c.status) for c in changes] == [(run.info.run_id, "FAILED")]
    assert "ended without closing the run" in MlflowClient(fresh_store).get_run(run.info.run_id).data.tags["error"]
    assert reap.collect(fresh_store) == []  # nothing left to close

    resumed = main_command([f"resume={run.info.run_id}", f"tracking.uri={fresh_store}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = runs(fresh_store)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed"] == "1" and "error" not in run.data.tags
    assert "(epoch 2)" in run.data.tags["resumed/1"]

    expected, got = history(whole_store, whole.info.run_id), history(fresh_store, run.info.run_id)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert [step for step, _ in got[key]] == [step for step, _ in expected[key]], key  # no epoch lost or twice
        if not key.startswith(TIMED):
            assert [v for _, v in got[key]] == pytest.approx([v for _, v in expected[key]], rel=1e-4, abs=1e-6), key
    assert len(got["val/mse"]) == 4
    assert run.data.metrics["test/mse"] == pytest.approx(whole.data.metrics["test/mse"], rel=1e-4)


def test_resume_refuses_a_finished_run_and_a_changed_config(tmp_path, fresh_store):
    train(compose_config(["+model=gru", "trainer=debug", "dataset.limit=32", "model.hidden_size=8",
                          f"tracking.uri={fresh_store}"]))
    (run,) = runs(fresh_store)
    with pytest.raises(ConfigError, match="finished; there is nothing to resume"):
        train(compose_config([f"resume={run.info.run_id}", f"tracking.uri={fresh_store}"]))
    with pytest.raises(ConfigError, match="no run nope in"):
        train(compose_config(["resume=nope", f"tracking.uri={fresh_store}"]))
    store = Store.open(fresh_store, "default")
    store.run(run.info.run_id).set_status("FAILED")
    overrides = ["+model=gru", "model.hidden_size=16", f"resume={run.info.run_id}", f"tracking.uri={fresh_store}"]
    with pytest.raises(ConfigError, match=r"the command line sets model.hidden_size=16, run \w+ has model.hidden_size=8"):
        resuming.find(compose_config(overrides), store, overrides)
    same = ["+model=gru", "model.hidden_size=8", f"resume={run.info.run_id}"]
    found = resuming.find(compose_config(same), store, same)
    assert found.run_id == run.info.run_id and found.config.dataset.limit == 32


def test_gc_closes_runs_whose_process_is_gone_and_leaves_the_living(fresh_store):
    store = Store.open(fresh_store, "default")
    client, experiment = store.client, store.experiment_id
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    env = environment_tags()
    alive = client.create_run(experiment, tags={**env}).info.run_id
    crashed = client.create_run(experiment, tags={**env, "pid": str(dead_pid)}).info.run_id
    signalled = client.create_run(experiment, tags={**env, "pid": str(dead_pid),
                                                    "error": "interrupted (Ctrl-C or SIGTERM)"}).info.run_id
    reused = client.create_run(experiment, tags={**env, "pid_start": "1"}).info.run_id  # our pid, another start
    elsewhere = client.create_run(experiment, tags={**env, "host": "another-host", "pid": str(dead_pid)}).info.run_id

    assert {(c.run_id, c.status) for c in reap.collect(fresh_store, dry_run=True)} == {
        (crashed, "FAILED"), (signalled, "KILLED"), (reused, "FAILED")}
    assert client.get_run(crashed).info.status == "RUNNING"  # a dry run changes nothing
    reaped = command("grubench.harness.reap", [f"tracking.uri={fresh_store}"], Path.cwd())
    assert reaped.returncode == 0, reaped.stderr
    assert reaped.stdout.count("marked ") == 3 and "3 dead run(s) closed" in reaped.stdout
    status = {run_id: client.get_run(run_id).info.status for run_id in (alive, crashed, signalled, reused, elsewhere)}
    assert status == {alive: "RUNNING", crashed: "FAILED", signalled: "KILLED", reused: "FAILED",
                      elsewhere: "RUNNING"}
    assert client.get_run(crashed).data.tags["closed_by"] == "grubench.reap"


def test_nan_loss_fails_the_run_with_a_clear_line_and_keeps_the_last_good_checkpoint(fresh_store, monkeypatch):
    import torch

    from grubench.task import SequenceTask

    step = SequenceTask.training_step

    def nan_in_epoch_2(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch == 2 and batch_idx == 1 else loss

    monkeypatch.setattr(SequenceTask, "training_step", nan_in_epoch_2)
    with pytest.raises(RunFailed, match=r"training loss became nan at epoch 2, step 13; lower optim.lr \(now 0.001\) "
                                        r"or trainer.gradient_clip_val \(now 1.0\)"):
        train(compose_config([*SHORT, f"tracking.uri={fresh_store}"]))
    (run,) = runs(fresh_store)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("Diverged: training loss became nan")
    assert all(math.isfinite(v) for v in run.data.metrics.values())
    assert len(MlflowClient(fresh_store).get_metric_history(run.info.run_id, "val/mse")) == 2
    folder = Path(run.data.tags["checkpoint_dir"])
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and (folder / "best.ckpt").is_file()  # the state before the bad step
    assert all(torch.isfinite(w).all() for w in last["state_dict"].values())


def test_a_model_too_large_for_memory_names_the_setting_before_any_run(tmp_path, fresh_store):
    cfg = compose_config(["+model=gru", "model.hidden_size=1000000", "trainer=debug", f"tracking.uri={fresh_store}"])
    with pytest.raises(ConfigError, match=r"parameters need about .* GiB to train.*: lower model.hidden_size \(now 1000000\)"):
        train(cfg)
    assert runs(fresh_store) == []


def test_out_of_memory_in_training_names_batch_size_first(tmp_path, fresh_store, monkeypatch):
    import torch

    from grubench.task import SequenceTask

    def out_of_memory(self, batch, batch_idx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SequenceTask, "training_step", out_of_memory)
    cfg = compose_config(["+model=gru", "trainer=debug", "dataset.limit=32", "model.hidden_size=8",
                          f"tracking.uri={fresh_store}"])
    with pytest.raises(RunFailed, match=r"out of memory training: lower dataset.batch_size \(now 64\), "
                                        r"model.hidden_size \(now 8\)"):
        train(cfg)
    (run,) = runs(fresh_store)
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("out of memory training")


@pytest.mark.slow
def test_two_process_ddp_on_cpu_finishes_one_run(tmp_path, fresh_store):
    result = run_cli([*SHORT, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                      "trainer.max_epochs=2", f"tracking.uri={fresh_store}", "verbose=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs(fresh_store)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer/strategy"] == "ddp"
    # 96 sequences in batches of 16, shared by 2 processes: 3 optimiser steps per epoch, not 6
    steps = [m.step for m in MlflowClient(fresh_store).get_metric_history(run.info.run_id, "val/mse")]
    assert sorted(steps) == [2, 5]
    assert "test/mse" in run.data.metrics
    assert "distributed_backend=gloo" in result.stdout + result.stderr
