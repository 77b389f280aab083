"""When a model has learned something, when a task is solved, and where its ceiling is.

The one place that says, per task kind, how far from chance a score must be before it counts as
learning, and what "solved" means. Training (the `SolveStep` callback logs `solve/step`) and the
report's verdict rules (`grubench.report.verdicts`) both read it.

Rules and their reasons:

    learned      the score beats the chance level by a margin:
                   mse  <= (1 - MSE_MARGIN) * chance        MSE_MARGIN = 0.10
                   acc  >= chance + ACC_MARGIN              ACC_MARGIN = 0.05 (5 points)
                   nll  <= (1 - NLL_MARGIN) * chance        NLL_MARGIN = 0.05
                 Why: a model that only predicts the mean (adding) or guesses (copy, digits)
                 scatters around chance by the test set's sampling noise: on the adding problem
                 with 1,000 test sequences the mean predictor's MSE lands in 0.16-0.18 (2-5%
                 off 1/6), and an accuracy of p on n = 1,000 items has a standard error of
                 sqrt(p (1 - p) / n) <= 1.6 points. The margins are about three times that
                 noise, so a model "learned" only where chance cannot explain its score.

    solved       the level at which the task counts as done (SOLVED):
                   adding  mse <= 0.01       (1/17 of chance; the usual threshold in the
                                             uRNN/IndRNN papers' plots)
                   copy    acc >= 0.99       (recall of the 10 symbols almost perfect)
                   other   within SOLVED_WITHIN (1 point of accuracy, 1% of NLL or MSE) of the
                           run's own best validation score: real data sets have no known
                           ceiling, so "solved" means "reached the level it ends at" (and
                           a run whose best never beat chance by the margin solved nothing)
                 `solve/step` is the first optimiser step whose validation score is solved.

    ceiling      the tasks with a known best score have a ceiling, the solved level itself:
                 two models both there cannot be told apart by score, so the rules compare
                 how fast they got there (`solve/step`). Real data sets have no ceiling.

    equivalent   two models are "as good" (a tie) only when the interval of their paired
                 difference lies within a margin declared here, before any study ran
                 (EQUIVALENT; report.statistics' TOST):
                   mse (adding)   0.01      the solved level: below it both have solved the task
                   acc            0.02      2 points: about twice the seed-to-seed spread of a
                                            trained model's accuracy on 1,000 test items
                   nll            0.1       nats per step: Chung et al. 2014's GRU and LSTM
                                            differ by 0.13 on JSB Chorales
                   solve steps    10%       of the budget: learning in 1,000 steps or in 1,100
                   step time      10%       a ratio of 0.9 to 1.1 (timings swing more than that
                                            between runs on a shared CPU; see the bench)
                   gradient slope 0.001     log10 per step: a factor of 10 over 1,000 steps

    known level  a real data set decides a claim only where its models train to near the
                 level the field reports for them (KNOWN_LEVELS, within NEAR_KNOWN): a study
                 stopped far below it compares undertrained models. MNIST-1D: the reference
                 GRU's 91% (Greydanus & Kobak).
"""

from __future__ import annotations

import math

from grubench.spec import higher_is_better

MSE_MARGIN = 0.10
ACC_MARGIN = 0.05
NLL_MARGIN = 0.05

# The margins within which two models count as equivalent (module docstring): per metric, for
# the relative ones a share of the budget or a log ratio.
EQUIVALENT = {"mse": 0.01, "acc": 0.02, "nll": 0.1}
EQUIVALENT_STEPS = 0.10       # of the budget
EQUIVALENT_TIME = math.log(1.1)  # of the step-time ratio
EQUIVALENT_SLOPE = 0.001      # log10 per step

# Published levels a data set's models reach: (metric, level, source).
KNOWN_LEVELS = {"mnist1d": ("acc", 0.91, "the reference GRU of Greydanus & Kobak, 91%")}
NEAR_KNOWN = 0.05  # accuracy points below the known level that still count as trained

# Absolute solved levels per data set: (metric, level); the task is solved at or beyond it.
SOLVED = {"adding": ("mse", 0.01), "copy": ("acc", 0.99)}
SOLVED_WITHIN = {"acc": 0.01, "mse": 0.01, "nll": 0.01}  # acc: points; mse, nll: a relative share


def learned(score: float, chance: float, metric: str) -> bool:
    """True when `score` beats `chance` by the margin for `metric` (module docstring).
    False for a missing score; True when the chance level is unknown and the score is known."""
    if score is None or math.isnan(score):
        return False
    if chance is None or math.isnan(chance):
        return True
    if metric == "acc":
        return score >= chance + ACC_MARGIN
    margin = MSE_MARGIN if metric == "mse" else NLL_MARGIN
    return score <= (1 - margin) * chance


def learned_level(chance: float, metric: str) -> float:
    """The score a model must reach to count as having learned (for plots and the report)."""
    if chance is None or math.isnan(chance):
        return math.nan
    if metric == "acc":
        return chance + ACC_MARGIN
    return (1 - (MSE_MARGIN if metric == "mse" else NLL_MARGIN)) * chance


def ceiling(dataset: str, metric: str) -> float | None:
    """The task's ceiling (its absolute solved level), None where it has none."""
    known = SOLVED.get(dataset)
    return known[1] if known and known[0] == metric else None


def at_ceiling(score: float, dataset: str, metric: str) -> bool:
    level = ceiling(dataset, metric)
    if level is None or score is None or math.isnan(score):
        return False
    return score >= level if higher_is_better(metric) else score <= level


def solved_level(dataset: str, metric: str, best: float | None = None) -> float:
    """The validation score at which a run counts as solved: the absolute level for tasks that
    have one, else within SOLVED_WITHIN of the run's best score `best` (NaN when not known)."""
    level = ceiling(dataset, metric)
    if level is not None:
        return level
    if best is None or math.isnan(best):
        return math.nan
    within = SOLVED_WITHIN.get(metric, 0.01)
    if metric == "acc":
        return best - within
    return best * (1 + within) if best >= 0 else best * (1 - within)


def first_solved(history: list[tuple[int, float]], dataset: str, metric: str,
                 chance: float = math.nan) -> int | None:
    """The first step of `history` [(step, validation score), ...] whose score is solved, or None.
    Where the level is relative to the run's best, a run whose best never beat `chance` by the
    margin solved nothing (its best is chance itself)."""
    scores = [v for _, v in history if not math.isnan(v)]
    if not scores:
        return None
    best = max(scores) if higher_is_better(metric) else min(scores)
    if ceiling(dataset, metric) is None and not learned(best, chance, metric):
        return None
    level = solved_level(dataset, metric, best)
    for step, value in history:
        if math.isnan(value):
            continue
        if (value >= level) if higher_is_better(metric) else (value <= level):
            return step
    return None


def short_of_known(dataset: str, metric: str, best: float) -> str | None:
    """Why a real data set's setting cannot decide: its best model stopped more than NEAR_KNOWN
    below the level the field reports (None: it is near, or the data set has no such level)."""
    known = KNOWN_LEVELS.get(dataset)
    if known is None or known[0] != metric or math.isnan(best) or best >= known[1] - NEAR_KNOWN:
        return None
    return f"best {best:.1%}, {known[1] - best:.1%} below {known[2]}"
