"""MLflow: where runs are stored and what they record.

    Store.open(uri, experiment)   the store (created and migrated under a file lock) and the
                                  experiment's id (created under the same lock)
    Run                           one open run: params, metrics, tags, artifacts, final status

A run's life (open, always close FINISHED / FAILED / KILLED) belongs to `harness.runs`; this
module only knows how to reach the store (where a run came from: `provenance`). Writes retry while SQLite reports the file locked:
jobs running at once share one SQLite file, and MLflow's own wait does not cover a transaction
that read before it wrote. Against a server, MLflow's client retries itself (7 times, waits
doubling from 2 s: a server away for up to about 4 minutes loses nothing).

Credentials never reach a run: a server URI's user and password (http://USER:PASSWORD@HOST) move
into MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (`resolve_uri`), and every param, tag,
name and text artifact a run records has any password in a URL replaced by *** (`redact`).
"""

from __future__ import annotations

import base64
import json
import os
import random
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from grubench.errors import TrackingError, first_line
from grubench.harness.quiet import redact

PARAMS_PER_BATCH = 100
MAX_PARAM_CHARS = 6000
LOCK_TIMEOUT_S = 300      # creating a store takes a second or two; a lock held this long is stuck
SERVER_TIMEOUT_S = 5      # a tracking server that does not answer its health check in this time is down
TEXT_ARTIFACTS = (".yaml", ".yml", ".json", ".log", ".txt", ".md")  # checked for passwords before they are logged
T = TypeVar("T")

# MLflow prints "View run ... at" and "View experiment at" when a run on a server ends; grubench
# prints its own link, once.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def resolve_uri(uri: str | None, start_dir: str | os.PathLike | None = None) -> str:
    """The absolute tracking URI for this command.

    Order: the `tracking.uri` config value, then MLFLOW_TRACKING_URI, then `mlflow.db` in the
    directory the command started in. A plain path or a relative `sqlite:///` path becomes an
    absolute `sqlite:////...` URI; server URIs (http, https, databricks) pass unchanged, except
    that a user and password in one move into MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
    (of this process and those it starts), where MLflow reads them.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlflow.db"
    start = Path(start_dir or os.getcwd())
    if "://" in uri and not uri.startswith("sqlite:"):
        if uri.startswith("file:"):
            raise TrackingError(f"file stores are not supported by MLflow 3; use a sqlite:/// path instead of {uri}")
        return without_credentials(uri)
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else Path(uri)
    if uri.startswith("sqlite:") and not uri.startswith("sqlite:///"):
        raise TrackingError(f"cannot read tracking URI {uri!r}: expected sqlite:///PATH")
    path = path if path.is_absolute() else start / path
    return f"sqlite:///{path.resolve()}"


def without_credentials(uri: str) -> str:
    """A server URI without the user and password it carries; they go into the environment."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme.startswith("http") or parts.username is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = urllib.parse.unquote(parts.username)
    if parts.password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = urllib.parse.unquote(parts.password)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """Fail early, with one line, when a SQLite store's file cannot be created or written, or a
    server does not answer. For a store that does not exist yet, a file is made beside it (and
    removed at once): whatever stops that (a missing or read-only folder, a file system that takes
    no files) is said in the system's own words. The store's own name is left alone, so that a
    command making the store at the same moment never loses it."""
    path = sqlite_path(uri)
    if path is None:
        if uri.startswith(("http://", "https://")):
            check_server(uri)
        return
    try:
        if path.exists():
            if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
                raise TrackingError(f"cannot use MLflow store {path}: not a readable and writable file")
            return
        if not path.parent.is_dir():
            raise TrackingError(f"cannot create MLflow store {path}: directory {path.parent} does not exist")
        probe = path.with_name(f".grubench-probe-{os.getpid()}")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        probe.unlink()
        if len(path.name) > os.pathconf(path.parent, "PC_NAME_MAX"):
            raise OSError(36, "File name too long")
    except OSError as error:
        raise TrackingError(f"cannot create MLflow store {path}: {(error.strerror or str(error)).lower()}") from None


def store_lock(uri: str):
    """A file lock beside a SQLite store (`mlflow.db.lock`), held while the store is created or
    migrated and while an experiment is created: MLflow's schema migration is not safe when two
    processes create one store at once. Servers serialise their own writes: no lock."""
    path = sqlite_path(uri)
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S) if path else nullcontext()


def locked(error: BaseException | None) -> bool:
    """Whether `error` (or its cause) is SQLite refusing a write because another process holds the file."""
    while error is not None:
        if "database is locked" in str(error) or "database table is locked" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def retrying(call: Callable[..., T], *args: Any, attempts: int = 10, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, repeated with growing random waits (about 30 s in all) while the
    SQLite store is locked; any other error is raised at once."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - only a locked store is retried
            if attempt == attempts - 1 or not locked(error):
                raise
            time.sleep(min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def check_server(uri: str) -> None:
    """Fail within SERVER_TIMEOUT_S, with one line, when a tracking server does not answer, does not
    take this client's credentials, or cannot read its own store (its database down): one search
    for an experiment, as a command's first request would make, with the credentials MLflow's
    client sends (MLFLOW_TRACKING_TOKEN, else MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                     data=b'{"max_results": 1}', headers={"Content-Type": "application/json",
                                                                          **credentials_header()})
    shown = redact(uri)
    try:
        urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S).close()
    except urllib.error.HTTPError as error:
        raise TrackingError(f"tracking.uri={shown}: {server_refusal(error)}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"tracking.uri={shown}: no MLflow server answers there ({reason})") from None


def credentials_header() -> dict[str, str]:
    """The Authorization header MLflow's client sends, from the same variables."""
    token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if user:
        return basic_auth(user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    return {}


def basic_auth(user: str, password: str) -> dict[str, str]:
    """HTTP basic auth's header for `user` and `password`."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def server_refusal(error: urllib.error.HTTPError) -> str:
    """What a server's HTTP error answer to `check_server` means for the user."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if error.code == 401 and not user:
        return "the server asks who you are: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    if error.code == 401:
        return (f"the server refused user {user} (wrong password, or no such user): check MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD")
    if error.code == 403:
        return f"user {user} may not read this server's experiments (HTTP 403)"
    if error.code >= 500:
        try:
            message = json.loads(error.read()).get("message", "")
        except (ValueError, OSError, AttributeError):
            message = ""
        said = redact(message.strip().splitlines()[0][:200]) if message.strip() else "no message"
        return f"the server answers but fails (HTTP {error.code}: {said}); is its database up?"
    return f"no MLflow server answers there (HTTP {error.code} for its search API)"


class Store:
    """One MLflow store and one experiment in it.

    `Store.open` checks the store, creates it (and migrates its schema) and the experiment if
    missing, all under `store_lock`, so that any number of commands started at once on a new
    store all find it ready. Artifacts of a SQLite store go beside it, in `mlartifacts/`.
    """

    def __init__(self, uri: str, client: MlflowClient, experiment_id: str):
        self.uri, self.client, self.experiment_id = uri, client, experiment_id

    @classmethod
    def open(cls, uri: str, experiment: str) -> "Store":
        check_store(uri)
        try:
            with store_lock(uri):
                client = MlflowClient(uri)
                return cls(uri, client, ensure_experiment(client, experiment, uri))
        except Timeout as error:
            raise TrackingError(f"cannot use MLflow store {uri}: {error.lock_file} held for {LOCK_TIMEOUT_S} s "
                                "by another process; remove it if no grubench command is running") from error
        except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
            raise TrackingError(f"cannot use MLflow store {redact(uri)}: {redact(first_line(error))}") from error

    def create_run(self, name: str | None, tags: Mapping[str, Any]) -> "Run":
        run = retrying(self.client.create_run, self.experiment_id, run_name=redact(name) if name else name,
                       tags={key: recorded(value) for key, value in tags.items()})
        return Run(self, run.info.run_id, run.info.run_name)

    def run(self, run_id: str) -> "Run":
        """An existing run of this store (to reopen or close it)."""
        return Run(self, run_id, retrying(self.client.get_run, run_id).info.run_name)

    def browse_hint(self) -> str:
        """The command that shows this store's runs."""
        if sqlite_path(self.uri):
            return f"mlflow ui --backend-store-uri {self.uri}"
        return f"open {redact(self.uri)} in a browser"


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, created if missing (restored if deleted); call under `store_lock`."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    path = sqlite_path(uri)
    location = (path.parent / "mlartifacts").as_uri() if path else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        # over HTTP no lock is held: another process made it a moment ago (a shared search's workers)
        made = client.get_experiment_by_name(name) if error.error_code == "RESOURCE_ALREADY_EXISTS" else None
        if made is None:
            raise
        return made.experiment_id


def recorded(value: Any) -> str:
    """A param's or tag's value as a run records it: a string of at most MAX_PARAM_CHARS, no password."""
    return redact(str(value))[:MAX_PARAM_CHARS]


class Run:
    """An open MLflow run: what it records (no password: `recorded`, `log_artifact`). Its life
    (final status) belongs to `runs.tracked_run`."""

    def __init__(self, store: Store, run_id: str, name: str):
        self.store, self.id, self.name = store, run_id, name

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(key, recorded(value)) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            retrying(self.store.client.log_batch, self.id, params=items[start : start + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        timestamp = int(time.time() * 1000)
        items = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        retrying(self.store.client.log_batch, self.id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(key, recorded(value)) for key, value in tags.items()]
        retrying(self.store.client.log_batch, self.id, tags=items)

    def delete_tag(self, key: str) -> None:
        retrying(self.store.client.delete_tag, self.id, key)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Log the file `path`; a text file that holds a password in a URL goes as a copy without it."""
        if not path.exists():
            return
        text = path.read_text(errors="replace") if path.suffix in TEXT_ARTIFACTS else None
        shown = redact(text) if text is not None else None
        if shown == text:
            self.store.client.log_artifact(self.id, str(path), folder)
            return
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / path.name
            copy.write_text(shown)
            self.store.client.log_artifact(self.id, str(copy), folder)

    def info(self):
        """The run as the store holds it now (mlflow.entities.Run)."""
        return retrying(self.store.client.get_run, self.id)

    def set_status(self, status: str) -> None:
        """RUNNING, or a final status: FINISHED, FAILED, KILLED (mlflow.entities.RunStatus names)."""
        if status == "RUNNING":
            retrying(self.store.client.update_run, self.id, status=status)
        else:
            retrying(self.store.client.set_terminated, self.id, status)
