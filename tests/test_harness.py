"""The main command end to end (README, "Two commands", "Single runs", "Sweeps", "Browsing"):
what a run prints and records, how it reads in MLflow, a sweep's parent and children."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import TINY, TINY_SWEEP, runs


def test_the_main_command_prints_plain_lines_and_records_the_whole_run(cli, store):
    result = cli("+model=gru", *TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                 "trainer.enable_progress_bar=true", "claims=[C1,C5]")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no third-party notices, no warnings

    # piped to a file: one plain line per epoch, the summary, how to browse
    lines = result.stdout.splitlines()
    assert len(lines) <= 20 and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.stdout)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
    summary = next(line for line in lines if line.startswith("gru on adding: test/mse = "))
    assert "than chance (0.1667)" in summary
    assert lines[-2] == f"  browse: mlflow ui --backend-store-uri {store}"

    (run,) = runs(store)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ["train/loss", "train/mse", "val/loss", "val/mse", "test/loss", "test/mse",
                 "params/total", "params/trainable", "params/recurrent", "solve/solved", "train/steps",
                 "speed/train_samples_per_s", "speed/step_ms", "speed/epoch_s", "mem/peak_mb"]:
        assert name in metrics, name
    gru = torch.nn.GRU(2, 8, batch_first=True)
    assert metrics["params/recurrent"] == sum(p.numel() for p in gru.parameters())
    assert metrics["params/total"] == metrics["params/recurrent"] + 8 + 1  # head: Linear(8, 1)
    assert metrics["train/steps"] == 2  # 64 sequences: one batch of 64 per epoch

    params = run.data.params
    assert params["model/hidden_size"] == "8" and params["trainer/max_epochs"] == "2"
    assert params["dataset/_target_"] == "grubench.data.AddingDataModule"
    tags = run.data.tags
    for name in ["git_commit", "version/torch", "version/lightning", "version/cuda", "device", "host",
                 "precision/trainer"]:
        assert tags.get(name), name
    assert tags["precision/recurrent_dtype"] == "float32"
    assert tags["model/impl"] == "kernel"   # grubench's CPU GRU kernel (torch's nn.GRU equations)
    assert tags["claims"] == "C1,C5" and tags["task/chance"] == "0.1667"
    assert tags["mlflow.note.content"] == summary

    client = MlflowClient(store)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "grubench.log", "checkpoints"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == {"checkpoints/best.ckpt"}

    # how it reads in MLflow: its name, its data set as dataset input, the view the link opens
    assert run.info.run_name == "gru-adding-trainer=debug-dataset.limit=64-model.hidden_size=8-trainer.max_epochs=2-" \
                                "trainer.limit_train_batches=2-trainer.enable_progress_bar=true-claims=[C1,C5]-seed0"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "adding" and json.loads(dataset.dataset.profile)["train/sequences"] == 64
    link = lines[-1].split("then open ")[1]
    assert link.startswith(f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs?")
    experiment = client.get_experiment(run.info.experiment_id)
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{link.split('viewStateShareKey=')[1]}"])
    assert view["selectedColumns"][0] == view["orderByKey"] == "metrics.`test/mse`" and view["orderByAsc"]
    assert {"metrics.`params/total`", "metrics.`speed/step_ms`", "tags.`seed`"} <= set(view["selectedColumns"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_run_stops_once_its_validation_metric_passes_the_stopping_threshold(cli, store):
    # any MSE of an untrained model on adding is below 10: the run stops after its first epoch of three
    result = cli("+model=gru", *TINY, "trainer.max_epochs=3", "early_stopping.stopping_threshold=10")
    assert result.returncode == 0, result.stderr
    (run,) = runs(store)
    assert run.info.status == "FINISHED"
    assert len(MlflowClient(store).get_metric_history(run.info.run_id, "val/mse")) == 1
    assert run.data.params["early_stopping/stopping_threshold"] == "10"


def test_a_sweep_has_a_parent_with_a_child_per_job_and_goes_on_past_a_failing_one(cli, store, tmp_path):
    # lr=1e30 makes the loss overflow: those jobs end FAILED, the others still run
    result = cli("-m", "+model=rnn,gru", *TINY_SWEEP, "optim.lr=1e-3,1e30", "dataset.limit=256",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("grubench: error: 2 of 4 jobs failed, first: job ")
    found = runs(store)
    (parent,) = [r for r in found if r.data.tags.get("sweep") == "parent"]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FAILED" and parent.data.tags["jobs/total"] == "4"
    assert sorted((r.data.tags["model"], r.data.params["optim/lr"], r.info.status) for r in children) == [
        ("gru", "0.001", "FINISHED"), ("gru", "1e+30", "FAILED"), ("rnn", "0.001", "FINISHED"), ("rnn", "1e+30", "FAILED")]
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "training loss became" in failed.data.tags["error"]
    assert result.stdout.count("test/mse = ") == 2 and result.stdout.count("browse:") == 0  # browsing: once, at the end


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
    assert output.strip().splitlines()[-1] == f"grubench: interrupted; run {run.info.run_id} is recorded KILLED"


def test_a_data_set_without_a_validation_set_trains_quietly(cli, store):
    # MNIST-1D as its paper trains it (dataset.val_size=0): no validation loop, nothing monitored,
    # no Lightning warning per epoch about a missing key or an empty loader
    result = cli("+model=gru", "+experiment=mnist1d_gru", "trainer.max_steps=45", "dataset.limit=500")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (run,) = runs(store, "mnist1d_gru")
    assert run.data.tags["data/val/sequences"] == "0" and "test/acc" in run.data.metrics
    assert "val/acc" not in run.data.metrics
