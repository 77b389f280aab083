"""The report's figures, one function each, written as PNG files (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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
    for model, group in runs.groupby("model"):
        points = sorted((length, Summary.of(g[column])) for length, g in group.groupby("length"))
        ax.errorbar([p[0] for p in points], [p[1].mean for p in points],
                    yerr=[0 if p[1].n < 2 else p[1].half_width for p in points], marker="o", capsize=3,
                    label=model)


def score_vs_length(runs: pd.DataFrame, path: Path) -> Path | None:
    """C1: each model's test score against the sequence length, one panel per synthetic task,
    mean and 95% interval over seeds, with the chance level."""
    if runs.empty:
        return None
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
        length_axis(ax, part["length"])
        if metric == "mse":  # solved runs sit at 1e-4 and chance at 0.17: only a log scale shows both
            ax.set_yscale("log")
        ax.set_title(f"{dataset}: test score vs sequence length")
        ax.set_xlabel("sequence length T (time steps)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.legend()
    return save(fig, path)


def length_axis(ax, lengths: pd.Series) -> None:
    """A log axis of sequence lengths, ticked at the lengths that ran, written as plain numbers."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(pd.to_numeric(lengths, errors="coerce").dropna().unique()))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def memory_length(runs: pd.DataFrame, lengths: dict[str, float], path: Path) -> Path | None:
    """C1: per model, the share of seeds that solved the adding problem at each length of the
    ladder; the dashed line is the share a length must reach to count in the model's memory
    length (given in the legend)."""
    from grubench.report.verdicts import SOLVED_SHARE

    adding = runs[runs["kind"] == "adding"] if not runs.empty else runs
    if adding.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, group in adding.groupby("model"):
        shares = group.groupby("length")["solved"].mean().sort_index()
        ax.plot(shares.index, shares.values, marker="o",
                label=f"{model}: memory length {int(lengths.get(model) or 0) or 'none'}")
    ax.axhline(SOLVED_SHARE, color="grey", linestyle="--", linewidth=1, label="solved in 2/3 of the seeds")
    length_axis(ax, adding["length"])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("adding problem: share of seeds that solved it (MSE <= 0.01)")
    ax.set_xlabel("sequence length T (time steps)")
    ax.set_ylabel("seeds that solved it (share)")
    ax.legend(fontsize=8)
    return save(fig, path)


def gradient_slopes(runs: pd.DataFrame, path: Path) -> Path | None:
    """C2: each model's slope of log10 |dL/dx_t| over the distance, per setting, at
    initialisation and after training (mean and 95% interval over seeds); below zero the
    gradient vanishes, above it explodes."""
    from grubench.report.verdicts import GRADIENT_STAGES

    stages = {stage: column for stage, column in GRADIENT_STAGES.items() if column in runs}
    if runs.empty or not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, (stage, column) in zip(axes[0], stages.items()):
        settings = sorted(runs["setting"].unique())
        models = sorted(runs["model"].unique())
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            summaries = [Summary.of(runs.loc[(runs["setting"] == s) & (runs["model"] == model), column])
                         for s in settings]
            ax.bar([j + i * width for j in range(len(settings))], [x.mean for x in summaries], width,
                   yerr=[0 if x.n < 2 else x.half_width for x in summaries], capsize=3, label=model)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))], settings)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"gradient slope, {'at initialisation' if stage == 'init' else 'after training'}")
        ax.set_ylabel("slope of log10 |dL/dx_t| (per step of distance)")
        ax.legend(fontsize=8)
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
    known = ("lstm", "lstm_nfg", "lstm_nig", "lstm_nog", "lstm_cifg", "janet")
    present = set(runs["tags.model"])
    models = [m for m in known if m in present] + sorted(present - set(known))  # e.g. lstm_fb1 beside them
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


def learning_curves(runs: pd.DataFrame, curves: dict, path: Path, title: str) -> Path | None:
    """Validation score against the optimiser step, one panel per setting, one line per model:
    the mean over seeds with a band from the lowest to the highest seed. Dashed grey: chance;
    dotted: the level a model must pass to count as having learned; solid black: the solved
    level where the task has one (adding, copy). MSE panels use a log scale, where the learned
    part of the curve lives; a run stopped early (early_stopping) leaves the mean after its last
    step. `curves`: {run id: [(step, value), ...]}."""
    from grubench import levels

    runs = runs[runs["run_id"].isin([k for k, v in curves.items() if v])] if not runs.empty else runs
    if runs.empty:
        return None
    settings = sorted(runs["setting"].unique())
    columns = min(3, len(settings))
    rows = -(-len(settings) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(sorted(runs["tags.model"].unique()))}
    for ax, setting in zip(axes.flat, settings):
        part = runs[runs["setting"] == setting]
        dataset, metric = part["tags.dataset"].iloc[0], part["tags.task/metric"].iloc[0]
        for model, group in part.groupby("tags.model"):
            table = pd.DataFrame([(step, value) for run_id in group["run_id"] for step, value in curves[run_id]],
                                 columns=["step", "value"]).groupby("step")["value"]
            mean, low, high = table.mean(), table.min(), table.max()
            ax.plot(mean.index, mean.values, color=colours[model], label=f"{model} (n={len(group)})")
            ax.fill_between(mean.index, low.values, high.values, color=colours[model], alpha=0.15)
        chance = part["chance"].dropna()
        if len(chance):
            ax.axhline(chance.iloc[0], color="grey", linestyle="--", linewidth=1, label="chance")
            ax.axhline(levels.learned_level(chance.iloc[0], metric), color="grey", linestyle=":", linewidth=1,
                       label="learned (margin)")
        solved = levels.ceiling(dataset, metric)
        if solved is not None:
            ax.axhline(solved, color="black", linewidth=1, label="solved")
        if metric in ("mse",):
            ax.set_yscale("log")
        ax.set_title(setting)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"validation {metric}")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, path)
