"""MLflow records of a benchmark grid: one parent run for the grid, one child run per cell.

A cell's run holds the cell as params (model, device, precision, batch, seq_len, hidden,
input_size, and the model config as model/...), its measurements as metrics (grid.METRICS), and
as tags the environment (versions, TF32 flags), the dtype and the path that ran
(`precision/recurrent_dtype`, `model/impl`, the tags a training run has) and `bench/status`.
Skipped and failed cells get a run too, with no measurements, so a reader sees what was asked and
why it did not run. The parent run holds the settings, the CSVs and the printed tables as artifacts.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from grubench.bench.grid import METRICS, Cell
from grubench.config import flatten
from grubench.harness.provenance import environment_tags
from grubench.harness.store import Run


class BenchRecorder:
    """Records cells as child runs of `parent` (the grid's run, opened by `tracked_run`)."""

    def __init__(self, parent: Run, settings: DictConfig, tags: dict):
        self.parent = parent
        self.tags = {**environment_tags(), **tags}
        parent.set_tags({**tags, "bench/role": "grid"})
        parent.log_params(flatten(OmegaConf.to_container(settings, resolve=True)))

    def log_cell(self, row: dict, model_node: DictConfig | None) -> None:
        label = Cell(row["model"], row["device"], row["precision"], row["batch"], row["seq_len"], row["hidden"]).label
        label += f"-r{row['round']}" if row.get("round") else ""
        tags = {**self.tags, "mlflow.parentRunId": self.parent.id, "bench/role": "cell", "model": row["model"],
                "bench/status": row["status"], "precision/requested": row["precision"],
                "precision/recurrent_dtype": row["dtype"] or "none", "model/impl": row["impl"] or "none",
                "flops/source": row["flops_source"] or "none", "grad/finite": str(row["grad_finite"])}
        # A cell's run is a record of a measurement already made: it opens and closes at once.
        run = self.parent.store.create_run(label, tags)
        params = {k: row[k] for k in ("model", "device", "precision", "batch", "seq_len", "hidden", "input_size", "round")}
        if model_node is not None:
            params.update(flatten(OmegaConf.to_container(model_node, resolve=True), "model/"))
        run.log_params(params)
        metrics = {name: row[column] for column, name in METRICS.items()
                   if isinstance(row[column], (int, float)) and not math.isnan(row[column])}
        if metrics:
            run.log_metrics(metrics)
        run.set_status("FAILED" if row["status"].startswith("error") else "FINISHED")
