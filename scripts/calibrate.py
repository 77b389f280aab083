"""Print each model's learning rate choice from the calibration runs (scripts/calibrate.sh).

    python scripts/calibrate.py [tracking.uri=STORE]

Per preset (tag `study`), setting and model, for each learning rate: the mean over the
calibration seeds of the best validation score (a failed run scores the task's chance level),
how many seeds solved the task, and the mean steps to solve (the budget where unsolved). The
choice: where some rate solved the task in every seed, the one that solved fastest; else the one
with the best mean validation score.
"""

from __future__ import annotations

import math
import sys

import pandas as pd
from mlflow.tracking import MlflowClient

from grubench.harness.arguments import store_argument
from grubench.spec import higher_is_better


def best_validation(client: MlflowClient, run) -> float:
    metric = run.data.tags.get("task/metric", "")
    history = [m.value for m in client.get_metric_history(run.info.run_id, f"val/{metric}")]
    if run.info.status == "FAILED" or not history:
        return float(run.data.tags.get("task/chance", math.nan))
    return max(history) if higher_is_better(metric) else min(history)


def main(argv: list[str]) -> None:
    uri, _ = store_argument(argv)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("calibration")
    if experiment is None:
        sys.exit(f"calibrate.py: error: no experiment 'calibration' in {uri}: run scripts/calibrate.sh first")
    rows = []
    for run in client.search_runs([experiment.experiment_id], "attributes.status != 'RUNNING'", max_results=5000):
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        if "optim/lr" not in params:  # ended before it recorded its config
            continue
        budget = metrics.get("train/budget_steps", math.nan)
        solved = metrics.get("solve/solved", 0) == 1 and run.info.status == "FINISHED"
        rows.append({"study": tags.get("study"), "dataset": tags.get("dataset"), "T": params.get("dataset/seq_len"),
                     "model": tags.get("model"), "lr": float(params["optim/lr"]), "metric": tags.get("task/metric"),
                     "best_val": best_validation(client, run), "solved": solved,
                     "steps": metrics.get("solve/step", budget) if solved else budget})
    frame = pd.DataFrame(rows)
    for (study, dataset, length, model), group in frame.groupby(["study", "dataset", "T", "model"]):
        table = group.groupby("lr").agg(best_val=("best_val", "mean"), solved=("solved", "sum"),
                                        seeds=("solved", "size"), steps=("steps", "mean"))
        all_solved = table[table["solved"] == table["seeds"]]
        if len(all_solved):
            choice = all_solved["steps"].idxmin()
        else:
            choice = table["best_val"].idxmax() if higher_is_better(group["metric"].iloc[0]) else table["best_val"].idxmin()
        outcome = "; ".join(f"{lr:g}: val {r.best_val:.4g}, solved {int(r.solved)}/{int(r.seeds)}, steps {r.steps:.0f}"
                            for lr, r in table.iterrows())
        print(f"{study} {dataset} T={length} {model}: lr {choice:g}  ({outcome})")


if __name__ == "__main__":
    main(sys.argv[1:])
