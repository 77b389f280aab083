"""The evidence a claims report rests on: the training runs MLflow recorded, one row per run.

A run bears on a claim when its `claims` tag names it (the study presets set it), and decides it
when its setting is one the preset named before the study ran (tag `decides/<claim>`, from the
config's `decides`); other settings of the same runs are shown as context and decide nothing.

Every run counts, the failed ones too: a FAILED run (a diverged loss, say) is a run that did not
learn: its score is the task's chance level, it learned and solved nothing. KILLED runs (Ctrl-C,
a spent budget) are missing seeds, named as such.

Which runs stand for a setting: a claim reads one scale (small or full: the scale of its newest
deciding run), and each setting one study (the preset, tag `study`) and one budget (steps,
epochs, training sequences, batch, the weights tested, the stopping rule: `budget()`; not the
learning rate or the width, which a study may choose per model); within it the newest run of
each (model, seed) counts once. So a quick debug sweep after a study does not replace the
study's runs, and the report names the study and budget each verdict rests on.

Summaries over seeds (`Summary`): the mean and a 95% Student-t interval (scipy.stats.t.interval),

    mean +- t_{0.975, n-1} * s / sqrt(n)          (n seeds, s the sample standard deviation)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from scipy import stats

from grubench import levels
from grubench.spec import higher_is_better

LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean and 95% interval of one metric over n seeds (half-width NaN when n < 2)."""

    mean: float
    half_width: float
    n: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, values) -> "Summary":
        """The summary of `values` (None and NaN left out): their mean and the half-width of
        the Student-t interval, t_{0.975, n-1} * s / sqrt(n); 0 when every value is the same."""
        values = tuple(float(v) for v in values if v is not None and not math.isnan(float(v)))
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0, ())
        mean = float(np.mean(values))
        if n < 2:
            return cls(mean, math.nan, n, values)
        if len(set(values)) == 1:  # the value itself: np.mean can be off by a rounding
            return cls(values[0], 0.0, n, values)
        _, high = stats.t.interval(LEVEL, n - 1, loc=mean, scale=stats.sem(values))
        return cls(mean, float(high) - mean, n, values)

    @property
    def constant(self) -> bool:
        """Every value the same: a sample variance of exactly 0."""
        return len(set(self.values)) == 1

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if math.isnan(self.half_width):
            return f"{self.mean:.4g} (n={self.n})"
        return f"{self.mean:.4g} ± {self.half_width:.2g} (n={self.n})"


def load_runs(uri: str) -> pd.DataFrame:
    """Every FINISHED or FAILED run in every experiment of the store, one row each, newest first.

    Columns as MLflow names them (`metrics.test/acc`, `params.dataset/seq_len`, `tags.model`,
    `status`), plus `experiment` (its name)."""
    client = mlflow.tracking.MlflowClient(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return pd.DataFrame()
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(list(experiments), order_by=["attributes.start_time DESC"])
    if frame.empty:
        return frame
    frame = frame[frame["status"].isin(["FINISHED", "FAILED"])]
    frame["experiment"] = frame["experiment_id"].map(experiments)
    return frame


# What makes two runs of a setting comparable. Not the learning rate or the width: a study may
# choose them per model (a learning rate calibrated per model, a parameter-matched width).
BUDGET_PARAMS = {"trainer/max_steps": "steps", "trainer/max_epochs": "epochs", "dataset/train_size": "train",
                 "dataset/batch_size": "batch", "test_weights": "test", "early_stopping/patience": "patience",
                 "early_stopping/stopping_threshold": "stop_at"}


def budget(row) -> str:
    """The run's training budget in one line, e.g. "epochs=25 train=6400 batch=64" (unset or
    unlimited values left out)."""
    parts = []
    for param, name in BUDGET_PARAMS.items():
        value = row.get(f"params.{param}")
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("None", "-1", ""):
            continue
        parts.append(f"{name}={value}")
    return " ".join(parts)


def column(frame: pd.DataFrame, name: str, default=None) -> pd.Series:
    """frame[name], or a column of `default` where the store never recorded it."""
    return frame[name] if name in frame else pd.Series(default, index=frame.index, dtype=object)


def training_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The training runs of a store: runs with a model, not sweep parents, bench cells or report runs."""
    if frame.empty:
        return frame
    trained = column(frame, "tags.model").notna() & (column(frame, "tags.sweep") != "parent") \
        & column(frame, "tags.bench/role").isna()
    return frame[trained]


def bench_times(frame: pd.DataFrame) -> pd.DataFrame:
    """The benchmark's measured cells (python -m grubench.bench): one row per (model, device,
    precision, batch, seq_len, hidden) with the median training-step time over its rounds,
    `train_ms`, and how many rounds it had, `rounds`."""
    if frame.empty or "tags.bench/role" not in frame:
        return pd.DataFrame()
    cells = frame[(frame["tags.bench/role"] == "cell") & (column(frame, "tags.bench/status") == "ok")].copy()
    if cells.empty or "metrics.time/train_ms" not in cells:
        return pd.DataFrame()
    keys = ["tags.model", "params.device", "params.precision", "params.batch", "params.seq_len", "params.hidden"]
    table = cells.groupby(keys)["metrics.time/train_ms"].agg(["median", "size"]).reset_index()
    table.columns = ["model", "device", "precision", "batch", "seq_len", "hidden", "train_ms", "rounds"]
    table["hidden"] = pd.to_numeric(table["hidden"])
    return table


def claim_runs(frame: pd.DataFrame, claim: str) -> pd.DataFrame:
    """The runs tagged with `claim` that stand for each setting (module docstring), one per
    (setting, model, seed), with these columns added:

        setting, kind      "adding T=100", "adding"; the data set is the kind of task
        length, seed, model, study, scale, budget
        deciding           the setting is one the run's preset named for this claim
        failed             the run ended FAILED
        score              the test score; the chance level for a failed run
        metric, higher, chance
        learned, solved    per run (grubench.levels); nothing for a failed run
        solve_step         the first step at the solved level; the budget for a run that never got there
        budget_steps       the optimiser steps the run was given
    """
    runs = training_runs(frame)
    if runs.empty or "tags.claims" not in runs or "tags.dataset" not in runs:
        return pd.DataFrame()
    tagged = runs["tags.claims"].fillna("").str.split(",").apply(lambda ids: claim in ids)
    runs = runs[tagged & runs["tags.dataset"].notna()].copy()
    if runs.empty:
        return pd.DataFrame()
    runs["kind"] = runs["tags.dataset"]
    runs["model"] = runs["tags.model"]
    runs["seed"] = pd.to_numeric(column(runs, "tags.seed"), errors="coerce")
    runs["length"] = pd.to_numeric(column(runs, "params.dataset/seq_len").fillna(column(runs, "tags.task/seq_len")),
                                   errors="coerce")
    runs["setting"] = [setting_name(d, length, steps, arm) for d, length, steps, arm in zip(
        runs["tags.dataset"], runs["length"], column(runs, "params.dataset/steps"), column(runs, "tags.arm"))]
    runs["study"] = column(runs, "tags.study").fillna("")
    runs["scale"] = runs["study"].str.split("/").str[0].where(runs["study"].str.contains("/"), "")
    decides = column(runs, f"tags.decides/{claim}").fillna("")
    runs["deciding"] = [setting in named.split(";") for setting, named in zip(runs["setting"], decides)]
    runs["budget"] = [budget(row) for _, row in runs.iterrows()]
    runs = newest_of_each(runs)
    runs["failed"] = runs["status"] == "FAILED"
    runs["metric"] = column(runs, "tags.task/metric").fillna("")
    runs["higher"] = runs["metric"].map(higher_is_better)
    runs["chance"] = pd.to_numeric(column(runs, "tags.task/chance"), errors="coerce")
    scores = [float(row.get(f"metrics.test/{row['metric']}", math.nan)) for _, row in runs.iterrows()]
    runs["score"] = [chance if failed else score for score, chance, failed in zip(scores, runs["chance"], runs["failed"])]
    runs["learned"] = [not failed and levels.learned(score, chance, metric) for score, chance, metric, failed in
                       zip(runs["score"], runs["chance"], runs["metric"], runs["failed"])]
    reached = pd.to_numeric(column(runs, "metrics.solve/solved"), errors="coerce") == 1
    runs["solved"] = reached & runs["learned"]
    trained = pd.to_numeric(column(runs, "metrics.train/steps"), errors="coerce")
    given = pd.to_numeric(column(runs, "metrics.train/budget_steps"), errors="coerce")
    runs["budget_steps"] = given.fillna(given.groupby(runs["setting"]).transform("max")).fillna(
        trained.groupby(runs["setting"]).transform("max"))
    step = pd.to_numeric(column(runs, "metrics.solve/step"), errors="coerce")
    runs["solve_step"] = step.where(runs["solved"], runs["budget_steps"])
    for quantity in GRADIENT_QUANTITIES:
        runs[f"{quantity}_slope_init"], runs[f"{quantity}_slope_trained"] = zip(
            *(gradient_slopes(row, quantity) for _, row in runs.iterrows()))
    return runs


GRADIENT_QUANTITIES = ("x", "state")  # grubench.gradflow: dL/dx_t, and dL/d(the whole state)


def gradient_slopes(row, quantity: str) -> tuple[float, float]:
    """(slope at initialisation, slope at the run's last listed step) of a gradient-flow quantity:
    the metrics grad/<quantity>_slope_step<N> at the steps the run's tag grad/steps lists."""
    steps = [int(s) for s in str(row.get("tags.grad/steps") or "").split(",") if s.strip().isdigit()]
    if not steps:
        return math.nan, math.nan
    value = lambda step: float(row.get(f"metrics.grad/{quantity}_slope_step{step}", math.nan))  # noqa: E731
    return value(0) if 0 in steps else math.nan, value(max(steps)) if max(steps) > 0 else math.nan


def newest_of_each(runs: pd.DataFrame) -> pd.DataFrame:
    """One scale for the claim (its newest deciding run's, else its newest run's), one study and
    budget per setting (its newest run's made by a preset, else its newest run's), the newest run
    of each (setting, model, seed). Rows come newest first."""
    preferred = runs[runs["deciding"]] if runs["deciding"].any() else runs
    runs = runs[runs["scale"] == preferred["scale"].iloc[0]]
    keep = []
    for _, group in runs.groupby("setting", sort=False):
        preset = group[group["study"] != ""]
        first = (preset if len(preset) else group).iloc[0]
        keep.append(group[(group["study"] == first["study"]) & (group["budget"] == first["budget"])])
    return pd.concat(keep).drop_duplicates(["setting", "model", "seed"], keep="first")


def setting_name(dataset: str, length, steps=None, arm=None) -> str:
    """"adding T=100", "digits (rows)", "mnist1d", and a study arm's name after it: "adding T=500 [matched]"."""
    if dataset in ("adding", "copy") and not pd.isna(length):
        name = f"{dataset} T={int(length)}"
    elif isinstance(steps, str):
        name = f"{dataset} ({steps})"
    else:
        name = dataset
    return f"{name} [{arm}]" if isinstance(arm, str) and arm else name


def load_curves(uri: str, runs: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """{run id: [(step, validation score), ...]} of the runs' task metric (`val/<metric>`)."""
    client = mlflow.tracking.MlflowClient(uri)
    curves = {}
    for _, row in runs.iterrows():
        metric = row.get("tags.task/metric")
        if isinstance(metric, str) and metric:
            history = client.get_metric_history(row["run_id"], f"val/{metric}")
            curves[row["run_id"]] = sorted((m.step, m.value) for m in history)
    return curves
