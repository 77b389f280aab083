"""The report's figures, one function each, written as PNG files (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from grubench.report.evidence import Summary  # noqa: E402

METRIC_LABELS = {"mse": "test MSE (lower is better)", "acc": "test accuracy (higher is better)",
                 "nll": "test NLL per step (lower is better)"}


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lines_per_model(ax, runs: pd.DataFrame, column: str) -> None:
    """One line per model: `column`'s mean over seeds against the length, 95% interval bars."""
    for model, group in runs.groupby("tags.model"):
        points = sorted((length, Summary.of(g[column])) for length, g in group.groupby("length"))
        ax.errorbar([p[0] for p in points], [p[1].mean for p in points],
                    yerr=[0 if p[1].n < 2 else p[1].half_width for p in points], marker="o", capsize=3,
                    label=model)


def score_vs_length(runs: pd.DataFrame, path: Path) -> Path | None:
    """C1: each model's test score against the sequence length, one panel per synthetic task,
    mean and 95% interval over seeds, with the chance level."""
    runs = runs[runs["tags.dataset"].isin(["adding", "copy"]) & runs["length"].notna()]
    if runs.empty:
        return None
    datasets = sorted(runs["tags.dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = runs[runs["tags.dataset"] == dataset]
        lines_per_model(ax, part, "score")
        chance = pd.to_numeric(part["tags.task/chance"], errors="coerce").dropna()
        metric = part["tags.task/metric"].iloc[0]
        if len(chance):
            ax.axhline(chance.iloc[0], color="grey", linestyle="--", label="chance")
        ax.set_xscale("log")
        ax.set_title(f"{dataset}: test score vs sequence length")
        ax.set_xlabel("sequence length T (time steps)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.legend()
    return save(fig, path)


def gradient_decay(runs: pd.DataFrame, path: Path) -> Path | None:
    """C2: log10(|dL/dh_1| / |dL/dh_T|) against sequence length per model, at initialisation
    and after training."""
    columns = [c for c in ("metrics.grad/decay_log10_init", "metrics.grad/decay_log10_trained") if c in runs]
    if runs.empty or not columns:
        return None
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        lines_per_model(ax, runs, column)
        stage = "at initialisation" if column.endswith("_init") else "after training"
        ax.set_title(f"gradient reaching step 1, {stage}")
        ax.set_xlabel("sequence length T (time steps)")
        ax.set_ylabel("log10(|dL/dh_1| / |dL/dh_T|)")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend()
    return save(fig, path)


def gradient_curves(curves: list, path: Path) -> Path | None:
    """C2: |dL/dh_t| against t for each model (a list of objects with model, stage, steps, norms)."""
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for curve in curves:
        ax.plot(curve.steps, curve.norms, label=f"{curve.model} ({curve.stage})")
    ax.set_yscale("log")
    ax.set_title("gradient norm through time (adding, one batch)")
    ax.set_xlabel("time step t")
    ax.set_ylabel("|dL/dh_t| (log scale)")
    ax.legend()
    return save(fig, path)


def cost_per_model(runs: pd.DataFrame, path: Path) -> Path | None:
    """C3/C5: recurrent parameters and median step time per model."""
    needed = {"metrics.params/recurrent", "metrics.speed/step_ms"}
    if runs.empty or not needed <= set(runs.columns):
        return None
    per_model = runs.groupby("tags.model")[sorted(needed)].median().sort_values("metrics.params/recurrent")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.bar(per_model.index, per_model["metrics.params/recurrent"], color="tab:blue")
    left.set_title("recurrent parameters per model")
    left.set_ylabel("parameters (count)")
    right.bar(per_model.index, per_model["metrics.speed/step_ms"], color="tab:orange")
    right.set_title("training step time per model (median)")
    right.set_ylabel("ms per step (forward + backward + update)")
    for ax in (left, right):
        ax.set_xlabel("model")
        ax.tick_params(axis="x", rotation=30)
    return save(fig, path)


def ablations(runs: pd.DataFrame, path: Path) -> Path | None:
    """C4: each LSTM variant's test score per setting, mean and 95% interval over seeds."""
    if runs.empty:
        return None
    settings = sorted(runs["setting"].unique())
    models = [m for m in ("lstm", "lstm_nfg", "lstm_nig", "lstm_nog", "lstm_cifg", "janet")
              if m in set(runs["tags.model"])]
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        part = runs[runs["setting"] == setting]
        summaries = [Summary.of(part.loc[part["tags.model"] == m, "score"]) for m in models]
        ax.bar(models, [s.mean for s in summaries],
               yerr=[0 if s.n < 2 else s.half_width for s in summaries], capsize=3, color="tab:green")
        metric = part["tags.task/metric"].iloc[0]
        ax.set_title(f"LSTM gate ablations: {setting}")
        ax.set_xlabel("model")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.tick_params(axis="x", rotation=30)
    return save(fig, path)
