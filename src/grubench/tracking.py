"""MLflow: where runs are stored, how they open and close, what they record.

The harness owns each run's life: it opens the run before anything else happens, binds
Lightning's logger to it, and sets the final status itself (FINISHED, FAILED with the error,
or KILLED). Lightning's logger only sends metrics.
"""

from __future__ import annotations

import functools
import os
import platform
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from grubench.config import GrubenchError

PARAMS_PER_BATCH = 100
MAX_PARAM_CHARS = 6000


class TrackingError(GrubenchError):
    """The MLflow store cannot be used (bad URI, unreadable or unwritable path)."""


def locked(error: BaseException) -> bool:
    """Whether `error` (or its cause) is SQLite refusing a write because another process holds the lock."""
    while error is not None:
        if "database is locked" in str(error) or "database table is locked" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_when_locked(call, attempts: int = 10):
    """`call`, retried with growing random waits (about 30 s in all) while the SQLite store is locked.

    Jobs running at once share one SQLite file; MLflow waits up to 20 s for the lock, but a
    transaction that read before it writes can be refused at once, and is then safe to repeat.
    """

    @functools.wraps(call)
    def retrying(*args, **kwargs):
        for attempt in range(attempts):
            try:
                return call(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - only a locked store is retried
                if attempt == attempts - 1 or not locked(error):
                    raise
                time.sleep(min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.5))

    return retrying


class StoreClient(MlflowClient):
    """An MlflowClient whose calls that touch the store retry while a SQLite store is locked."""


for _name in ("create_experiment", "get_experiment_by_name", "restore_experiment", "create_run", "get_run",
              "update_run", "set_terminated", "log_batch", "set_tag", "delete_tag", "search_runs",
              "get_metric_history"):
    setattr(StoreClient, _name, retry_when_locked(getattr(MlflowClient, _name)))


def resolve_uri(uri: str | None, start_dir: str | os.PathLike | None = None) -> str:
    """The absolute tracking URI for this command.

    Order: the `tracking.uri` config value, then MLFLOW_TRACKING_URI, then `mlflow.db` in the
    directory the command started in. A plain path or a relative `sqlite:///` path becomes an
    absolute `sqlite:////...` URI; server URIs (http, https, databricks) pass unchanged.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlflow.db"
    start = Path(start_dir or os.getcwd())
    if "://" in uri and not uri.startswith("sqlite:"):
        if uri.startswith("file:"):
            raise TrackingError(f"file stores are not supported by MLflow 3; use a sqlite:/// path instead of {uri}")
        return uri
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else Path(uri)
    if uri.startswith("sqlite:") and not uri.startswith("sqlite:///"):
        raise TrackingError(f"cannot read tracking URI {uri!r}: expected sqlite:///PATH")
    path = path if path.is_absolute() else start / path
    return f"sqlite:///{path.resolve()}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """Fail early, with one line, when a SQLite store's file cannot be created or written."""
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            raise TrackingError(f"cannot use MLflow store {path}: not a readable and writable file")
    elif not path.parent.is_dir():
        raise TrackingError(f"cannot create MLflow store {path}: directory {path.parent} does not exist")
    elif not os.access(path.parent, os.W_OK):
        raise TrackingError(f"cannot create MLflow store {path}: directory {path.parent} is not writable")


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, created if missing (its artifacts beside a SQLite store)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    path = sqlite_path(uri)
    location = (path.parent / "mlartifacts").as_uri() if path else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        experiment = client.get_experiment_by_name(name)  # created by another process meanwhile
        if experiment is None:
            raise
        return experiment.experiment_id


def open_store(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """Check the store, create it and the experiment if needed; return (client, experiment id)."""
    check_store(uri)
    client = StoreClient(uri)
    try:
        experiment_id = ensure_experiment(client, experiment, uri)
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrackingError(f"cannot use MLflow store {uri}: {first_line}") from error
    return client, experiment_id


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(key, str(value)[:MAX_PARAM_CHARS]) for key, value in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    timestamp = mlflow.utils.time.get_current_time_millis()
    items = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=items)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    client.log_batch(run_id, tags=[RunTag(key, str(value)[:MAX_PARAM_CHARS]) for key, value in tags.items()])


def git_commit() -> str:
    """The commit of the grubench source tree, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def environment_tags() -> dict[str, str]:
    """Versions, host and process: what a reader needs to know where a number came from."""
    import pytorch_lightning
    import torch

    cuda = torch.version.cuda or "none"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    commit = git_commit()
    return {
        "mlflow.source.name": "python -m grubench",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "version/torch": torch.__version__,
        "version/lightning": pytorch_lightning.__version__,
        "version/cuda": cuda,
        "version/cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "none",
        "version/mlflow": mlflow.__version__,
        "device": device,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "pid_start": str(process_start(os.getpid())),
    }


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux), so that a pid reused by a
    later process is not taken for the run's; None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to a run the harness opened; it never ends the run.

    Made before the run opens (so that the Trainer, and any error in its config, comes first),
    then bound to the run with `bind`. Lightning calls `finalize` after fit and again after
    test; the stock logger would mark the run FINISHED there, before the test metrics and
    artifacts are in. Here the harness decides.

    Writes retry while the SQLite store is locked (`StoreClient`). A resumed run is bound with
    the (metric, step) pairs the store already holds: epochs run again after a kill are not
    written twice.
    """

    def __init__(self, uri: str):
        super().__init__(tracking_uri=uri)
        self._mlflow_client = StoreClient(uri)
        self.already_logged: set[tuple[str, int]] = set()

    def bind(self, run_id: str, already_logged: set[tuple[str, int]] = frozenset()) -> None:
        self._run_id = run_id
        self._experiment_id = self._mlflow_client.get_run(run_id).info.experiment_id
        # Initialised here: on first use the stock logger sets MLflow's global tracking URI, which
        # also sets MLFLOW_TRACKING_URI for this process and every command it starts later.
        self._initialized = True
        self.already_logged = set(already_logged)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {key: value for key, value in metrics.items() if (key, step or 0) not in self.already_logged}
        if metrics:
            super().log_metrics(metrics, step)

    def finalize(self, status: str = "success") -> None:
        pass


def log_artifact(client: MlflowClient, run_id: str, path: Path, folder: str | None = None) -> None:
    if path.exists():
        client.log_artifact(run_id, str(path), folder)
