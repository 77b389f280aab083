"""MLflow records of a benchmark grid: one parent run for the grid, one child run per cell.

A cell's run holds the cell as params (model, device, precision, batch, seq_len, hidden,
input_size, and the model config as model/...), its measurements as metrics (grid.METRICS), and
as tags the environment (versions, TF32 flags), the dtype that ran (`precision/recurrent_dtype`,
the same tag a training run has) and `bench/status`. Skipped and failed cells get a run too, with
no measurements, so a reader sees what was asked and why it did not run. The parent run holds the
settings, the CSVs and the printed tables as artifacts.
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from grubench import tracking
from grubench.bench.grid import METRICS


class BenchRecorder:
    def __init__(self, uri: str, experiment: str, run_name: str, settings: DictConfig, tags: dict):
        self.uri = uri
        self.client, self.experiment_id = tracking.open_store(uri, experiment)
        self.tags = {**tracking.environment_tags(), **tags}
        parent = self.client.create_run(self.experiment_id, run_name=run_name,
                                        tags={**self.tags, "bench/role": "grid"})
        self.parent_id = parent.info.run_id
        tracking.log_params(self.client, self.parent_id,
                            tracking.flatten(OmegaConf.to_container(settings, resolve=True)))

    def log_cell(self, row: dict, model_node: DictConfig | None) -> None:
        from grubench.bench.grid import Cell

        label = Cell(row["model"], row["device"], row["precision"], row["batch"], row["seq_len"], row["hidden"]).label
        tags = {**self.tags, "mlflow.parentRunId": self.parent_id, "bench/role": "cell", "model": row["model"],
                "bench/status": row["status"], "precision/requested": row["precision"],
                "precision/recurrent_dtype": row["dtype"] or "none", "flops/source": row["flops_source"] or "none",
                "grad/finite": str(row["grad_finite"])}
        run = self.client.create_run(self.experiment_id, run_name=label, tags={k: str(v) for k, v in tags.items()})
        run_id = run.info.run_id
        params = {k: row[k] for k in ("model", "device", "precision", "batch", "seq_len", "hidden", "input_size")}
        if model_node is not None:
            params.update(tracking.flatten(OmegaConf.to_container(model_node, resolve=True), "model/"))
        tracking.log_params(self.client, run_id, params)
        metrics = {name: row[column] for column, name in METRICS.items()
                   if isinstance(row[column], (int, float)) and not math.isnan(row[column])}
        if metrics:
            tracking.log_metrics(self.client, run_id, metrics)
        self.client.set_terminated(run_id, "FAILED" if row["status"].startswith("error") else "FINISHED")

    def finish(self, artifacts: list[Path], status: str = "FINISHED") -> None:
        for path in artifacts:
            tracking.log_artifact(self.client, self.parent_id, path)
        self.client.set_terminated(self.parent_id, status)
