"""The main command end to end: what a run records, sweeps, and what bad input gets."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from grubench.train import train
from tests.conftest import TINY, compose_config, run_cli, runs


def test_tiny_run_records_metrics_params_tags_and_artifacts(store):
    cfg = compose_config(["+model=gru", *TINY, f"tracking.uri={store}", "claims=[C1,C5]"])
    best = train(cfg)
    assert best is not None

    (run,) = runs(store)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ["train/loss", "train/mse", "val/loss", "val/mse", "test/loss", "test/mse",
                 "params/total", "params/trainable", "params/recurrent",
                 "speed/train_samples_per_s", "speed/step_ms", "speed/epoch_s", "mem/peak_mb"]:
        assert name in metrics, name
    gru = torch.nn.GRU(2, 8, batch_first=True)
    assert metrics["params/recurrent"] == sum(p.numel() for p in gru.parameters())
    assert metrics["params/total"] == metrics["params/recurrent"] + 8 + 1  # head: Linear(8, 1)

    params = run.data.params
    assert params["model/hidden_size"] == "8"
    assert params["dataset/_target_"] == "grubench.data.AddingDataModule"
    assert params["trainer/max_epochs"] == "1"

    tags = run.data.tags
    for name in ["git_commit", "version/torch", "version/lightning", "version/cuda", "device", "host",
                 "precision/trainer", "precision/recurrent_dtype"]:
        assert tags.get(name), name
    assert tags["precision/recurrent_dtype"] == "float32"
    assert tags["claims"] == "C1,C5"
    assert run.info.run_name.startswith("gru-adding")

    artifacts = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "checkpoints"} <= artifacts
    checkpoints = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id, "checkpoints")}
    assert checkpoints == {"checkpoints/best.ckpt"}


@pytest.mark.slow
def test_a_run_stops_once_its_validation_metric_passes_the_stopping_threshold(store):
    # any MSE of an untrained model on adding is below 10: the run stops after its first epoch of three
    cfg = compose_config(["+model=gru", *TINY, "trainer.max_epochs=3", "early_stopping.stopping_threshold=10",
                          f"tracking.uri={store}"])
    train(cfg)
    (run,) = runs(store)
    assert run.info.status == "FINISHED"
    assert len(MlflowClient(store).get_metric_history(run.info.run_id, "val/mse")) == 1
    assert run.data.params["early_stopping/stopping_threshold"] == "10"


def test_command_line_run_prints_summary_and_logs_job_log(tmp_path):
    result = run_cli(["+model=rnn", *TINY, "dataset=digits"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rnn on digits: test/acc = " in result.stdout
    assert "than chance (0.1000)" in result.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in result.stdout
    (run,) = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id)}
    assert "grubench.log" in artifacts


@pytest.mark.slow
def test_multirun_makes_a_parent_with_finished_children(tmp_path):
    # In a sweep over +model, model options take "++": the sweep's base config has no model yet.
    tiny = [o.replace("model.", "++model.") for o in TINY]
    result = run_cli(["-m", "+model=rnn,gru,lstm", *tiny, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents = [r for r in found if r.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["model"] for r in children) == ["gru", "lstm", "rnn"]
    assert all(r.info.status == "FINISHED" for r in [*children, *parents])
    assert parents[0].data.tags["jobs/total"] == "3"


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    # lr=1e30 makes the loss overflow: that job ends FAILED, the other still runs
    result = run_cli(["-m", "+model=gru", *TINY, "optim.lr=1e-3,1e30", "dataset.limit=256",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 1
    assert "1 of 2 jobs failed" in result.stderr
    found = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    statuses = sorted((r.data.tags.get("sweep", "child"), r.info.status) for r in found)
    assert statuses == [("child", "FAILED"), ("child", "FINISHED"), ("parent", "FAILED")]
    failed = next(r for r in found if r.info.status == "FAILED" and "sweep" not in r.data.tags)
    assert "training loss became" in failed.data.tags["error"]


@pytest.mark.parametrize("args, message", [
    ([], "no model chosen: add +model=NAME, one of: "),
    (["+model=nope"], "model=nope: no such model config"),
    (["+model=gru", "dataset=nope"], "dataset=nope: no such dataset config"),
    (["+model=gru", "model.hidden_size=0"], "model.hidden_size=0: must be a positive integer"),
    (["+model=gru", "dataset.batch_size=-4"], "dataset.batch_size=-4: must be a positive integer"),
    (["+model=gru", "dataset.seq_len=1"], "the adding problem needs seq_len >= 2"),
    (["+model=gru", "dataset=copy", "dataset.seq_len=0"], "dataset.seq_len=0: must be a positive integer"),
    (["+model=gru", "tracking.uri=/no/such/folder/mlflow.db"], "directory /no/such/folder does not exist"),
    (["+model=gru", "trainer.precision=fp7"], "bad trainer config: Precision 'fp7' is invalid"),
])
def test_bad_input_gets_a_clear_message_and_no_run(tmp_path, args, message):
    result = run_cli([*args, "trainer=debug"], cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not [r for r in runs(f"sqlite:///{tmp_path / 'mlflow.db'}") if r.info.status == "RUNNING"] \
        if (tmp_path / "mlflow.db").exists() else True


@pytest.mark.slow
def test_sigterm_marks_the_run_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "grubench", "+model=gru", "dataset.train_size=2000",
                             "trainer.max_epochs=1000", "trainer.enable_progress_bar=false"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # wait until the run is open, then give it time to start training
        lines.append(line)
        if "MLflow run" in line:
            time.sleep(3)
            break
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    (run,) = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags["error"]
