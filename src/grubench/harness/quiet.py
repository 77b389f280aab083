"""A quiet terminal: grubench's own lines, and the warnings that change what a user should do.

Unless `verbose=true`, `quiet()` turns off the notices of the libraries grubench runs on —
Lightning's hardware and checkpoint-restoring lines and its adverts, MLflow's table-creation
lines, a torch deprecation raised inside Lightning — and prints each warning that is left on one
line, without the library's file path (`plain_warnings`, again once Lightning, which sets its
own format, is imported). It runs before those libraries are imported: their
loggers are quieted by name (Lightning resets its top-level logger when imported, not these),
MLflow by its own environment variables.

Whatever `verbose` says, no password in a URL is shown: `redact` hides it, and every log record
(Hydra's list of a sweep's jobs and their overrides among them) passes through it.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# Loggers whose INFO lines are notices, not results: "GPU available: ...", "💡 Tip: ...",
# "Restoring states from the checkpoint ...", "`Trainer.fit` stopped: ...".
NOTICE_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.accelerators.cuda",
    "alembic",
)

# Warnings that say nothing a user of grubench can act on (message patterns, matched from the start).
IGNORED_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",   # torch 2.13 about Lightning's own code
    r"The number of training batches .* is smaller than the logging interval",  # tiny runs
)

# The password of a URL: scheme://user:PASSWORD@host.
PASSWORD_IN_URL = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it shown as ***: http://ann:***@host."""
    return PASSWORD_IN_URL.sub(r"\1:***@", text)


def redact_logs() -> None:
    """Redact every log record as it is made (Hydra's list of a sweep's jobs and their overrides
    among them): Hydra sets up its log handlers again for each batch of jobs, so a filter on a
    handler would not last."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacting(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted: logging reports it when it is written
            return record
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        return record

    redacting.redacts = True
    logging.setLogRecordFactory(redacting)


def quiet(verbose: bool) -> None:
    """Quiet the libraries' notices (unless `verbose`) and print warnings on one line; never show a password."""
    redact_logs()
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # resume downloads config.yaml
    for name in NOTICE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    plain_warnings()


def plain_warnings() -> None:
    """Print warnings on one line, without a file path. Lightning sets its own format when it is
    imported: call this again after importing it."""
    warnings.formatwarning = one_line_warning


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"grubench: warning: {str(message).strip().splitlines()[0]}\n"
