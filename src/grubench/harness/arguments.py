"""The store argument every command other than the main one takes: `tracking.uri=STORE`.

    python -m grubench.report tracking.uri=sqlite:///runs/mlflow.db
    python -m grubench.harness.reap                 # $MLFLOW_TRACKING_URI, else ./mlflow.db

The value is resolved as the main command resolves `tracking.uri` (`store.resolve_uri`).
"""

from __future__ import annotations

from grubench.errors import TrackingError
from grubench.harness.store import check_store, resolve_uri, sqlite_path

PREFIX = "tracking.uri="


def store_argument(arguments: list[str]) -> tuple[str, list[str]]:
    """(the store the `tracking.uri=STORE` argument among `arguments` names, the other arguments)."""
    given = [a for a in arguments if a.startswith(PREFIX)]
    rest = [a for a in arguments if not a.startswith(PREFIX)]
    return resolve_uri(given[-1][len(PREFIX):] if given else None), rest


def add_store_argument(parser) -> None:
    """The optional `tracking.uri=STORE` argument of a command that reads a store (argparse)."""
    parser.add_argument("store", nargs="?", default=None, metavar="tracking.uri=STORE",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")


def store_from_argument(value: str | None) -> str:
    """The store `add_store_argument`'s value names; TrackingError when it is not `tracking.uri=...`."""
    if value and not value.startswith(PREFIX):
        raise TrackingError(f"{value}: give the store as {PREFIX}STORE")
    return store_argument([value] if value else [])[0]


def existing_store(value: str | None) -> str:
    """`store_from_argument` for a command that reads runs: TrackingError when the store is not
    there (a SQLite file that does not exist, a server that does not answer)."""
    uri = store_from_argument(value)
    check_store(uri)
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(f"no MLflow store at {path}")
    return uri
