"""Shared helpers: compose the packaged config, run a command, read a store.

Every store a test uses starts as a copy of one template made once per test process (making an
MLflow store's tables takes one to two seconds).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from grubench.config import run_config
from grubench.harness.store import Store
from tests.cli import main_command, subprocess_command

# Tiny settings that keep a real run to a second or two.
TINY = ["trainer=debug", "dataset.limit=64", "model.hidden_size=8"]
TINY_SWEEP = [o.replace("model.", "++model.") for o in TINY]  # +model swept: model options take ++

compose_config = run_config
run_cli = subprocess_command


def runs(uri: str, experiment: str = "default"):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the harness's default: on a shared 2-core machine two threads can
    spin-wait for each other and make a step hundreds of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables and the experiment `default`, made once."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    Store.open(f"sqlite:///{path}", "default")
    return path


@pytest.fixture
def store(tmp_path, empty_store) -> str:
    """`tmp_path/mlflow.db`, a copy of the template: the store a command started in tmp_path uses."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


fresh_store = store


@pytest.fixture
def cli(tmp_path, store):
    """`cli(*args)`: `python -m grubench ARGS` in this process, in tmp_path with its store."""
    return lambda *args, **kwargs: main_command(list(args), tmp_path, **kwargs)
