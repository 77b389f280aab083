"""The tests a verdict rests on, made for a few seeds: paired differences, equivalence against a
declared margin, censored times to solve, and Holm's correction over a claim's settings.

Every model of a study sees the same data for the same seed, so two models are compared seed by
seed. For seeds i = 1..n with scores a_i and b_i, the paired differences, signed so that a
positive one favours a,

    d_i = a_i - b_i        (a higher score is better: accuracy)
    d_i = b_i - a_i        (a lower score is better: MSE, NLL, time)

are summarised by their mean with a 95% interval (paired t: mean +- t_{0.975, n-1} s_d / sqrt(n),
scipy.stats.ttest_1samp), and by how many seeds a won. Whether they differ at all: the paired
t-test of mean(d) = 0. Beside it, the exact sign-flip permutation test (all 2^n sign patterns,
scipy.stats.permutation_test), which assumes nothing of the differences' distribution, is shown;
it does not decide, because with few seeds it cannot: its smallest two-sided p-value is 2 / 2^n
(0.0625 with 5 seeds, 0.031 with 6), above what Holm's correction asks of two or more settings.
Whether they are the same within a margin m declared for the task (grubench.levels): two
one-sided paired t-tests (TOST) of mean(d) <= -m and mean(d) >= m; the larger of their p-values
is the equivalence p-value. Differences that are all the same (exact counts, say) are certain:
p = 0 where they are not 0.

Times to solve a task (the first step at the solved level) are censored: a run that never
solved, or failed, is known only to take longer than its budget. Two models' times are
compared by the log-rank test (scipy.stats.logrank on scipy.stats.CensoredData).

A claim tests several settings at once: Holm's step-down correction keeps the chance of any
false finding among them at the level (5%): the i-th smallest of k p-values is compared with
level / (k - i + 1), and every p-value after the first that fails is kept too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.05  # the chance of a false finding a verdict allows, per claim


@dataclass(frozen=True)
class Paired:
    """Two models compared seed by seed (module docstring); `differences` favour a when > 0."""

    seeds: tuple
    differences: tuple[float, ...]
    mean: float
    low: float            # 95% interval of the mean difference
    high: float
    p_differ: float       # paired t-test of mean(d) = 0, two-sided
    p_sign_flip: float    # exact sign-flip test of the same, shown beside
    p_equivalent: float   # TOST against the margin
    margin: float
    wins: int             # seeds where a did better

    @property
    def n(self) -> int:
        return len(self.differences)


def paired(a: Mapping, b: Mapping, higher_is_better: bool, margin: float) -> Paired | None:
    """Compare the scores `a` and `b` ({seed: score}) on the seeds both have; None if fewer
    than 2 seeds are shared."""
    seeds = tuple(sorted(set(a) & set(b)))
    if len(seeds) < 2:
        return None
    d = np.array([(a[s] - b[s]) if higher_is_better else (b[s] - a[s]) for s in seeds], dtype=float)
    wins = int((d > 0).sum())
    sign_flip = float(stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                             alternative="two-sided").pvalue)
    if np.all(d == d[0]):  # no spread: the interval is the difference itself
        exact = float(d[0])
        return Paired(seeds, tuple(d), exact, exact, exact, float(exact == 0), sign_flip,
                      float(abs(exact) >= margin), margin, wins)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_1samp(d, 0.0)
        low, high = test.confidence_interval(0.95)
        p_equivalent = max(stats.ttest_1samp(d, -margin, alternative="greater").pvalue,
                           stats.ttest_1samp(d, margin, alternative="less").pvalue)
    return Paired(seeds, tuple(d), float(d.mean()), float(low), float(high), float(test.pvalue), sign_flip,
                  float(p_equivalent), margin, wins)


@dataclass(frozen=True)
class Survival:
    """Times to solve of two models: how many solved, their median step among those that did,
    and the log-rank p-value (1 where neither solved)."""

    solved_a: int
    n_a: int
    solved_b: int
    n_b: int
    median_a: float
    median_b: float
    p_differ: float
    sooner: str  # "a", "b" or "" (which solves sooner, by the log-rank test's direction)


def times_to_solve(a: Sequence[tuple[float, bool]], b: Sequence[tuple[float, bool]]) -> Survival | None:
    """Compare censored times: `a`, `b` are [(step, solved)], the step being the solve step when
    solved, the budget otherwise. None when either has fewer than 2 runs whose step is known."""
    a, b = ([(s, bool(done)) for s, done in runs if not math.isnan(s)] for runs in (a, b))
    if len(a) < 2 or len(b) < 2:
        return None

    def censored(runs):
        return stats.CensoredData(uncensored=[s for s, done in runs if done], right=[s for s, done in runs if not done])

    def median(runs):
        steps = [s for s, done in runs if done]
        return float(np.median(steps)) if steps else math.nan

    solved_a, solved_b = sum(done for _, done in a), sum(done for _, done in b)
    p, sooner = 1.0, ""
    if solved_a or solved_b:
        result = stats.logrank(censored(a), censored(b))
        # the statistic is positive when a solves more often than expected under the null: sooner
        p, sooner = float(result.pvalue), "a" if result.statistic > 0 else "b" if result.statistic < 0 else ""
    return Survival(solved_a, len(a), solved_b, len(b), median(a), median(b), p, sooner)


def holm(pvalues: Sequence[float], level: float = LEVEL) -> list[bool]:
    """Which of `pvalues` are significant under Holm's step-down correction at `level`."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    significant = [False] * len(pvalues)
    for rank, index in enumerate(order):
        if pvalues[index] > level / (len(pvalues) - rank):
            break
        significant[index] = True
    return significant
