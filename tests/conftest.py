"""Shared helpers: compose the packaged config, run the command line, read a store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient

from grubench.harness.store import Store

# Tiny settings that keep a real run to a second or two.
TINY = ["trainer=debug", "dataset.limit=64", "model.hidden_size=8"]


def compose_config(overrides: list[str]):
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m grubench ARGS` in `cwd`, its own MLflow store there unless ARGS name one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "grubench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


def runs(uri: str, experiment: str = "default"):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the harness's default: on a shared 2-core machine two threads can
    spin-wait for each other and make a step hundreds of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables made once (making them takes seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Store.open(f"sqlite:///{path}", "default")
    return path


@pytest.fixture
def fresh_store(tmp_path, empty_store):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
