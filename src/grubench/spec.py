"""The contract between data, model and task: a data set's description of its task, and the
argument check every constructor shares. It imports nothing of grubench, so models and data
depend on it, not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutputKind = Literal["regression", "classification", "per_step_classification", "per_step_multilabel"]


def higher_is_better(metric: str) -> bool:
    """True for a metric where a higher score is better (accuracy, "acc"); False for the
    others (mse, nll, loss), where lower is better. The one place that decides it."""
    return metric == "acc"


@dataclass(frozen=True)
class TaskSpec:
    """A data set's description of its task.

    name:          short name used in run names ("adding", "copy", ...)
    input_kind:    "real" (x is [B, T, input_size] float) or "tokens" (x is [B, T] long ids)
    input_size:    features per step, or the vocabulary size for token inputs
    output:        the output kind; decides the head (last step or every step), loss and metrics
    num_outputs:   1 for regression, the number of classes, or the number of labels
    seq_len:       time steps per sequence as fed to the model (the longest, if they vary)
    metric:        the task's main metric, logged as `val/<metric>` and `test/<metric>`
    chance:        chance-level score of each metric by name, e.g. {"mse": 0.167}
    metric_last_steps: per-step tasks only: the metric counts only the last N steps
                   (the recall steps of the copy task); None counts every step
    """

    name: str
    input_kind: Literal["real", "tokens"]
    input_size: int
    output: OutputKind
    num_outputs: int
    seq_len: int
    metric: str
    chance: dict
    metric_last_steps: int | None = None

    @property
    def per_step(self) -> bool:
        return self.output.startswith("per_step")

    @property
    def metric_mode(self) -> str:
        """"max" when a higher metric is better (accuracy), "min" otherwise (mse, nll, loss)."""
        return "max" if higher_is_better(self.metric) else "min"


def require_positive(**values) -> None:
    """Raise ValueError naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
