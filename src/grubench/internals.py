"""The only places grubench relies on another library's internals, each in one small adapter.

Each adapter names what it relies on; tests/test_internals.py checks every one against the
installed library and fails naming the library and its version when an upgrade changes it.

    Lightning   the fit loop's epoch counters inside a checkpoint (`rewind_epoch_start`), and
                its exception for a bad Trainer argument (`is_lightning_misconfiguration`)
    MLflow UI   the experiment tags its runs table reads: a saved view (`SHARED_VIEW_TAG`,
                opened by the address parameter `VIEW_PARAMETER`) and the experiment's kind
                (`EXPERIMENT_KIND_TAG`: the runs table instead of the GenAI overview)

It imports nothing heavy: Lightning's module is looked up only where Lightning is loaded.
"""

from __future__ import annotations

import sys
from typing import Any

# MLflow 3's UI (mlflow/server/js): experiment tags it reads, and the address parameter that
# opens a saved view. Not part of MLflow's documented API.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
VIEW_PARAMETER = "viewStateShareKey"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
RUNS_TABLE_PARAMETERS = "workflowType=machine_learning"


def rewind_epoch_start(checkpoint: dict[str, Any]) -> None:
    """Make a checkpoint saved in `on_train_epoch_start` resume at the start of that epoch.

    Lightning counts the new epoch "ready" just before that hook; saved as it is, the
    checkpoint would resume into an epoch whose batches all count as done. One less "ready"
    is the state an instant earlier, between two epochs. Relies on the checkpoint layout
    checkpoint["loops"]["fit_loop"]["epoch_progress"]["total" | "current"]["ready"]."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for counts in (progress["total"], progress["current"]):
        counts["ready"] -= 1


def is_lightning_misconfiguration(error: BaseException) -> bool:
    """Whether `error` is Lightning's word for a bad Trainer argument (MisconfigurationException)."""
    exceptions = sys.modules.get("lightning_fabric.utilities.exceptions")
    return exceptions is not None and isinstance(error, exceptions.MisconfigurationException)
