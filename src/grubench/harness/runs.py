"""A run's life, in one place: `tracked_run` opens an MLflow run and always closes it.

    with tracked_run(store, name, tags) as run:     # or tracked_run(store, reopen=RUN_ID)
        ...                                          # record into `run`; any failure here
                                                     # is recorded, then raised again

The run ends

    FINISHED  when the block ends normally
    KILLED    on Ctrl-C or SIGTERM (KeyboardInterrupt), or a non-zero SystemExit (Lightning turns
              Ctrl-C into sys.exit(1)); tag error = "interrupted ..."; the block's exception
              is then raised as `Interrupted(run id)`, so that the command can say which run
              it left KILLED
    FAILED    on any other exception: tag error = its first line, and the traceback as the
              artifact error.txt

whatever else fails while closing: each closing step (error tag, traceback, job logs) is tried
on its own, and a step that fails is named in one warning line instead of hiding the status.
Every entry point uses it: training runs, sweep and search parents, gradient flow, bench and
report runs.
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from grubench.errors import Interrupted, first_line
from grubench.harness.provenance import environment_tags
from grubench.harness.store import Run, Store

log = logging.getLogger("grubench")

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


def ending(failure: BaseException | None) -> tuple[str, str | None]:
    """(final status, error line) for a block that ended with `failure` (None: normally)."""
    if failure is None:
        return FINISHED, None
    if isinstance(failure, KeyboardInterrupt):
        return KILLED, "interrupted (Ctrl-C or SIGTERM)"
    if isinstance(failure, SystemExit):
        if failure.code in (0, None):
            return FINISHED, None
        cause = failure.__context__  # Lightning exits 1 on Ctrl-C; Hydra exits 1 inside its handler
        if isinstance(cause, KeyboardInterrupt):
            return KILLED, "interrupted (Ctrl-C or SIGTERM)"
        if cause is not None and not isinstance(cause, SystemExit):
            return FAILED, first_line(cause)
        return KILLED, f"interrupted (exit {failure.code})"
    return FAILED, first_line(failure)


@contextmanager
def tracked_run(store: Store, name: str | None = None, tags: Mapping[str, Any] = {}, reopen: str | None = None,
                logs: Iterable[Path] = (), describe_error=None) -> Iterator[Run]:
    """Open a run (or `reopen` an existing one: RUNNING again, owned by this process) and close it.

    `logs`: files logged as artifacts when the run closes, whatever its status (job logs).
    `describe_error(exception) -> str | None`: a clearer error line for some failures (out of memory).
    """
    if reopen:
        run = store.run(reopen)
        run.set_status("RUNNING")
        env = environment_tags()
        run.set_tags({key: env[key] for key in ("host", "pid", "pid_start")})
    else:
        run = store.create_run(name, {**environment_tags(), **tags})
    failure: BaseException | None = None
    try:
        yield run
    except BaseException as raised:
        failure = raised
        raise
    finally:
        close(run, failure, list(logs), describe_error)
        if failure is not None and ending(failure)[0] == KILLED \
                and not (isinstance(failure, Interrupted) and failure.run_id):
            raise Interrupted(run.id) from failure


def close(run: Run, failure: BaseException | None, logs: list[Path], describe_error=None) -> None:
    status, error = ending(failure)
    if status == FAILED and describe_error is not None:
        error = describe_error(failure) or error
    steps = []
    if error:
        steps.append(("error tag", lambda: run.set_tags({"error": error})))
    if status == FAILED:
        steps.append(("error.txt", lambda: log_traceback(run, failure)))
    steps += [(f"artifact {path.name}", lambda path=path: run.log_artifact(path)) for path in logs]
    for what, step in steps:
        try:
            step()
        except Exception as problem:  # noqa: BLE001 - the status below must still be set
            log.warning("run %s: could not record %s while closing it: %s", run.id, what, first_line(problem))
    run.set_status(status)


def log_traceback(run: Run, failure: BaseException) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "error.txt"
        path.write_text("".join(traceback.format_exception(type(failure), failure, failure.__traceback__)))
        run.log_artifact(path)
