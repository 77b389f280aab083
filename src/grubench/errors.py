"""The errors grubench reports to a user as one line (`GrubenchError` and its kinds).

The entry points catch `GrubenchError`, print `grubench: error: <message>` and exit non-zero;
anything else is a bug and keeps its traceback.
"""


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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C, so the run ends KILLED."""
