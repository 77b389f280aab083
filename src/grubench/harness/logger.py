"""Lightning's MLflow logger, bound to a run the harness opened."""

from __future__ import annotations

import os
from typing import Mapping

import mlflow
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from grubench.harness.store import Run, retrying


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger writing into a run the harness opened (`run_id`); it never ends
    the run and never leaves MLflow's global tracking URI set.

    Lightning calls `finalize` after fit and again after test; the stock logger would mark the
    run FINISHED there, before the test metrics and artifacts are in: here `tracked_run` decides.
    A resumed run passes the (metric, step) pairs the store already holds, so that epochs run
    again after a kill are not written twice. Writes retry while a SQLite store is locked.
    """

    def __init__(self, run: Run, already_logged: set[tuple[str, int]] = frozenset()):
        super().__init__(tracking_uri=run.store.uri, run_id=run.id)
        self.already_logged = set(already_logged)
        # The first use of `experiment` calls mlflow.set_tracking_uri, which also exports
        # MLFLOW_TRACKING_URI to every command this process starts later: put both back.
        before = os.environ.get("MLFLOW_TRACKING_URI")
        retrying(lambda: self.experiment)
        mlflow.set_tracking_uri(before)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {key: value for key, value in metrics.items() if (key, step or 0) not in self.already_logged}
        if metrics:
            retrying(super().log_metrics, metrics, step)

    def finalize(self, status: str = "success") -> None:
        pass
