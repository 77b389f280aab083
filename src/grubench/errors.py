"""The errors grubench reports to a user as one line, and the one helper that makes that line.

Every command runs inside `grubench.harness.command.run_command`, which catches `GrubenchError`,
prints `<prog>: error: <first line>` and exits 1; an `Interrupted` run exits 130 saying which
run it left KILLED. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GrubenchError(Exception):
    """An error reported to the user as one line, without a traceback."""


class ConfigError(GrubenchError):
    """The configuration asks for something impossible; raised before anything is created."""


class TrackingError(GrubenchError):
    """The MLflow store cannot be used (bad URI, unreadable or unwritable path, no server)."""


class RunFailed(GrubenchError):
    """A run opened, then failed; it is recorded FAILED with the error."""


class SweepFailed(GrubenchError):
    """Jobs of a sweep failed (or no trial of a search completed); its parent run ends FAILED."""


class Diverged(RuntimeError):
    """Training produced a loss that is not a finite number."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM. `run_id`: the run it ended (recorded KILLED), None while no run was open."""

    def __init__(self, run_id: str | None = None):
        super().__init__()
        self.run_id = run_id


class Refused(BaseException):
    """Carries a `GrubenchError` out of code that turns every `Exception` into a warning (Hydra's
    callbacks): the command's wrapper reports `error` as any other refusal."""

    def __init__(self, error: GrubenchError):
        super().__init__(str(error))
        self.error = error


def first_line(error: BaseException) -> str:
    """The error's first line, its type named unless it is one of grubench's own one-line errors."""
    text = str(error).strip()
    if not isinstance(error, (GrubenchError, Refused)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__
