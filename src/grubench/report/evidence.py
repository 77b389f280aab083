"""The evidence a claims report rests on: finished training runs from MLflow, aggregated over seeds.

A run bears on a claim when its `claims` tag names it (the study presets set it). Runs are
grouped by setting (data set, sequence length) and model; a group's score is summarised by its
mean and a 95% Student-t interval over seeds (scipy.stats.t.interval):

    mean +- t_{0.975, n-1} * s / sqrt(n)          (n seeds, s the sample standard deviation)

Two models are compared on a setting by Welch's 95% interval for the difference of their means
(scipy.stats.ttest_ind with equal_var=False):

    mean_a - mean_b +- t_{0.975, dof} * sqrt(s_a^2/n_a + s_b^2/n_b),
    dof = (s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))   (Welch-Satterthwaite)

one is "better" only when that interval excludes zero.

Which runs stand for a setting: every run carries its study (the preset it came from, tag
`study`) and its budget (steps, epochs, training sequences, batch, learning rate, width, the
weights tested: `budget()`). Runs of one setting from different studies or budgets never mix:
the setting rests on one (study, budget), the one of its newest run made by a preset, else of
its newest run; within it the latest run of each (model, seed) counts once. So a quick debug
sweep after a study does not replace the study's runs, and the report names the study and
budget each verdict rests on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from scipy import stats

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


def compare(a: Summary, b: Summary, higher_is_better: bool) -> str:
    """"better", "worse" or "tie" for a against b: Welch's 95% interval of mean(a) - mean(b)
    (module docstring) must exclude 0 for a difference to count. Where both have constant
    values the interval is the difference itself: any difference counts. "unknown" when either
    has fewer than 2 seeds."""
    if a.n < 2 or b.n < 2:
        return "unknown"
    if a.constant and b.constant:
        sign = np.sign(a.mean - b.mean)
    else:
        with warnings.catch_warnings():
            # scipy calls a sample of identical values "nearly identical"; its variance 0 is exact
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            low, high = stats.ttest_ind(a.values, b.values, equal_var=False).confidence_interval(LEVEL)
        sign = 0 if low <= 0 <= high else np.sign(a.mean - b.mean)
    if sign == 0:
        return "tie"
    return "better" if (sign > 0) == higher_is_better else "worse"


def load_runs(uri: str) -> pd.DataFrame:
    """Every finished run in every experiment of the store, one row each, newest first.

    Columns as MLflow names them (`metrics.test/acc`, `params.dataset/seq_len`, `tags.model`),
    plus `experiment` (its name)."""
    client = mlflow.tracking.MlflowClient(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return pd.DataFrame()
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(list(experiments), filter_string="attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"])
    if frame.empty:
        return frame
    frame["experiment"] = frame["experiment_id"].map(experiments)
    return frame


BUDGET_PARAMS = {"trainer/max_steps": "steps", "trainer/max_epochs": "epochs", "dataset/train_size": "train",
                 "dataset/batch_size": "batch", "optim/lr": "lr", "model/hidden_size": "H", "test_weights": "test",
                 "early_stopping/patience": "patience", "early_stopping/stopping_threshold": "stop_at"}


def budget(row) -> str:
    """The run's training budget in one line, e.g. "epochs=25 train=6400 batch=64 lr=0.01 H=64"
    (unset or unlimited values left out)."""
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
    """The training runs of a store: runs with a model, not sweep parents or report runs."""
    if frame.empty:
        return frame
    trained = column(frame, "tags.model").notna() & (column(frame, "tags.sweep") != "parent")
    return frame[trained]


def claim_runs(frame: pd.DataFrame, claim: str) -> pd.DataFrame:
    """The training runs tagged with `claim` that stand for each setting (module docstring), the
    latest of each (setting, model, seed); adds `setting`, `length`, `score`, `study`, `budget`,
    `solve_step` and `chance` columns. A setting is the data set and its length, and the width H
    where the claim's runs use more than one."""
    runs = training_runs(frame)
    if runs.empty or "tags.claims" not in runs or "tags.dataset" not in runs:
        return pd.DataFrame()
    tagged = runs["tags.claims"].fillna("").str.split(",").apply(lambda ids: claim in ids)
    runs = runs[tagged & runs["tags.dataset"].notna()].copy()
    if runs.empty:
        return pd.DataFrame()
    runs["length"] = pd.to_numeric(column(runs, "params.dataset/seq_len").fillna(column(runs, "tags.task/seq_len")),
                                   errors="coerce")
    runs["setting"] = [setting_name(d, length, steps) for d, length, steps in zip(
        runs["tags.dataset"], runs["length"], column(runs, "params.dataset/steps"))]
    widths = column(runs, "params.model/hidden_size")
    if widths.nunique() > 1:  # a study over widths: each width is a setting of its own
        runs["setting"] = runs["setting"] + " H=" + widths.astype(str)
    runs["score"] = [float(row.get(f"metrics.test/{row.get('tags.task/metric')}", math.nan)) for _, row in runs.iterrows()]
    runs["chance"] = pd.to_numeric(column(runs, "tags.task/chance"), errors="coerce")
    runs["study"] = column(runs, "tags.study").fillna("")
    runs["budget"] = [budget(row) for _, row in runs.iterrows()]
    # an unsolved run counts as solved just after its last step (a lower bound on its solve step)
    trained = pd.to_numeric(column(runs, "metrics.train/steps"), errors="coerce")
    runs["solve_step"] = pd.to_numeric(column(runs, "metrics.solve/step"), errors="coerce").fillna(trained + 1)
    keep = []
    for _, group in runs.groupby("setting", sort=False):  # rows are newest first
        preset = group[group["study"] != ""]
        first = (preset if len(preset) else group).iloc[0]
        keep.append(group[(group["study"] == first["study"]) & (group["budget"] == first["budget"])])
    runs = pd.concat(keep)
    return runs.drop_duplicates(["setting", "tags.model", "tags.seed"], keep="first")


def setting_name(dataset: str, length, steps=None) -> str:
    if dataset in ("adding", "copy") and not pd.isna(length):
        return f"{dataset} T={int(length)}"
    if isinstance(steps, str):
        return f"{dataset} ({steps})"
    return dataset


def summarise(runs: pd.DataFrame, column: str = "score") -> dict[tuple[str, str], Summary]:
    """{(setting, model): Summary of `column` over seeds}."""
    if runs.empty or column not in runs:
        return {}
    return {(setting, model): Summary.of(group[column])
            for (setting, model), group in runs.groupby(["setting", "tags.model"])}


def task_of(runs: pd.DataFrame, setting: str) -> tuple[str, str, float]:
    """(data set, metric, chance level) of a setting's runs."""
    part = runs[runs["setting"] == setting].iloc[0]
    return part["tags.dataset"], part.get("tags.task/metric", ""), float(part.get("chance", math.nan))


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
