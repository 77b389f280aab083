"""The evidence a claims report rests on: finished runs from MLflow, aggregated over seeds.

A run bears on a claim when its `claims` tag names it (the study presets set it). For every
claim, runs are grouped by setting (data set, sequence length) and model; within a group the
latest run of each seed counts once. A group's score is summarised by its mean and a 95%
Student-t interval over seeds:

    mean +- t_{0.975, n-1} * s / sqrt(n)          (n seeds, s the sample standard deviation)

Two models are compared on a setting by Welch's interval for the difference of their means;
one is "better" only when that interval excludes zero.
"""

from __future__ import annotations

import math
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
        values = tuple(float(v) for v in values if v is not None and not math.isnan(float(v)))
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0, ())
        mean = float(np.mean(values))
        if n < 2:
            return cls(mean, math.nan, n, values)
        sem = float(np.std(values, ddof=1)) / math.sqrt(n)
        return cls(mean, float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sem, n, values)

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if math.isnan(self.half_width):
            return f"{self.mean:.4g} (n={self.n})"
        return f"{self.mean:.4g} ± {self.half_width:.2g} (n={self.n})"


def compare(a: Summary, b: Summary, higher_is_better: bool) -> str:
    """"better", "worse" or "tie" for a against b: Welch's 95% interval of mean(a) - mean(b)
    must exclude 0 for a difference to count. "unknown" when either has fewer than 2 seeds."""
    if a.n < 2 or b.n < 2:
        return "unknown"
    va, vb = np.var(a.values, ddof=1) / a.n, np.var(b.values, ddof=1) / b.n
    diff = a.mean - b.mean
    se = math.sqrt(va + vb)
    if se == 0:
        sign = np.sign(diff)
    else:
        dof = (va + vb) ** 2 / ((va**2 / (a.n - 1) if va else 0) + (vb**2 / (b.n - 1) if vb else 0) or 1e-300)
        half = float(stats.t.ppf(0.5 + LEVEL / 2, dof)) * se
        sign = 0 if abs(diff) <= half else np.sign(diff)
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


def claim_runs(frame: pd.DataFrame, claim: str) -> pd.DataFrame:
    """The training runs tagged with `claim` (not sweep parents), the latest of each
    (setting, model, seed); adds `setting`, `length` and `score` columns. A setting is the data
    set and its length, and the width H where the claim's runs use more than one."""
    if frame.empty or "tags.claims" not in frame:
        return pd.DataFrame()
    tagged = frame["tags.claims"].fillna("").str.split(",").apply(lambda ids: claim in ids)
    runs = frame[tagged & (frame.get("tags.sweep", pd.Series(index=frame.index, dtype=object)) != "parent")].copy()
    if runs.empty or "tags.model" not in runs:
        return pd.DataFrame()
    runs = runs[runs["tags.model"].notna()]
    runs["length"] = pd.to_numeric(runs.get("params.dataset/seq_len", runs.get("tags.task/seq_len")), errors="coerce")
    runs["setting"] = [setting_name(d, length, steps) for d, length, steps in zip(
        runs["tags.dataset"], runs["length"], runs.get("params.dataset/steps", pd.Series(index=runs.index)))]
    widths = runs.get("params.model/hidden_size", pd.Series(index=runs.index, dtype=object))
    if widths.nunique() > 1:  # a study over widths: each width is a setting of its own
        runs["setting"] = runs["setting"] + " H=" + widths.astype(str)
    runs["score"] = [row.get(f"metrics.test/{row['tags.task/metric']}", math.nan) for _, row in runs.iterrows()]
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


def higher_is_better(runs: pd.DataFrame, setting: str) -> bool:
    modes = runs.loc[runs["setting"] == setting, "tags.task/metric_mode"].dropna()
    return bool(len(modes)) and modes.iloc[0] == "max"
