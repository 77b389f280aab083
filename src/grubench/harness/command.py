"""The one wrapper every command runs inside, and so the one error policy.

    run_command("grubench.report", main)        # main() -> exit code (None: 0)

  refused input     a `GrubenchError` (or one carried out of a Hydra callback: `Refused`)
                    prints `<prog>: error: <its first line>` and exits 1
  Ctrl-C, SIGTERM   both raise `Interrupted`; it prints `<prog>: interrupted; run <id> is recorded
                    KILLED` (or "no run was opened") and exits 130
  anything else     a bug: its traceback is printed as Python prints it

For a Hydra app (`hydra_app=True`, its task function decorated with `hydra_task`) an error Hydra
or OmegaConf raises before the task function began is the user's input (an unknown config, an
unreadable override) and is said in one line too; afterwards it is a bug like any other.
HYDRA_FULL_ERROR=1 in the environment shows Hydra's own traceback instead. A refusal leaves the
task function as `Refused`, which Hydra passes on without a line of its own.

This module imports nothing heavy: a refusal answers before torch, Lightning or MLflow load.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from functools import wraps
from typing import Callable, NoReturn, TypeVar

from grubench.errors import ConfigError, GrubenchError, Interrupted, Refused, first_line

_task_started = False
F = TypeVar("F", bound=Callable)


def hydra_task(function: F) -> F:
    """A Hydra task function under the error policy: Hydra's errors from its start on are bugs,
    and a `GrubenchError` it raises leaves Hydra as `Refused` (Hydra prints "Error executing
    job ..." for an Exception, not for a BaseException)."""
    @wraps(function)
    def task(*args, **kwargs):
        global _task_started
        _task_started = True
        try:
            return function(*args, **kwargs)
        except GrubenchError as error:
            raise Refused(error) from error

    return task  # type: ignore[return-value]


def error_line(prog: str, error: BaseException) -> str:
    return f"{prog}: error: {first_line(error.error if isinstance(error, Refused) else error)}"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises `Interrupted`, as Ctrl-C raises KeyboardInterrupt: the run ends KILLED."""
    def handler(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def hydra_refusal(error: BaseException) -> GrubenchError | None:
    """Hydra's or OmegaConf's error about the command line, as one ConfigError; None otherwise."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if _task_started or not isinstance(error, (HydraException, OmegaConfBaseException)):
        return None
    from grubench.config import hydra_error_line

    return ConfigError(hydra_error_line(error, sweep="-m" in sys.argv or "--multirun" in sys.argv))


def run_command(prog: str, main: Callable[[], int | None], hydra_app: bool = False) -> NoReturn:
    """Run `main` under the error policy of the module docstring and exit with its code."""
    global _task_started
    _task_started = False
    show_hydra = hydra_app and "HYDRA_FULL_ERROR" in os.environ
    if hydra_app:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors here instead of printing them
    try:
        with sigterm_as_interrupt():
            code = main()
    except (GrubenchError, Refused) as error:
        say(error_line(prog, error))
        code = 1
    except KeyboardInterrupt as interrupt:
        run_id = interrupt.run_id if isinstance(interrupt, Interrupted) else None
        say(f"{prog}: interrupted; " + (f"run {run_id} is recorded KILLED" if run_id else "no run was opened"))
        code = 130
    except Exception as error:
        refusal = None if show_hydra or not hydra_app else hydra_refusal(error)
        if refusal is None:
            raise
        say(error_line(prog, refusal))
        code = 1
    sys.exit(code or 0)
