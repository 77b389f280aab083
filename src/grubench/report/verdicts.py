"""The verdict rules: how recorded runs decide each claim of the document.

A claim is decided only on the settings its study's presets named before the study ran (tag
`decides/<claim>`); the other settings of those runs are shown as context. On each deciding
setting two models are compared seed by seed (`grubench.report.statistics`):

    tasks with a solved level (adding, copy), where a model solved in some seed:
        the steps to solve, unsolved and failed runs censored at their budget: log-rank test;
        as good when both solved in every seed within EQUIVALENT_STEPS of the budget (TOST)
    otherwise: the paired test scores (a failed run scores chance): paired t-test (the exact
        sign-flip test shown beside); as good when the paired difference lies within the task's
        margin (TOST)

and the setting ends

    better / worse    the difference is significant after Holm's correction over the claim's
                      deciding settings (5%), in the claim model's favour or against it
    tie               equivalent within the margin, significant after Holm's correction
    inconclusive      for one of these reasons, and it counts for nothing:
      (undertrained)       neither model learned in any seed (grubench.levels' margin over chance)
      (short of the known level)  a real data set whose models stopped far below the level the
                                  field reports (MNIST-1D: 91%); the row says how far
      (too few seeds)      neither a difference nor an equivalence could be shown: more seeds,
                           or a wider margin than the one declared, would be needed
      (too few seeds for Holm's correction)  significant alone (p <= 0.05), not over the claim's
                           several settings: its interval may exclude zero and still decide nothing
      (explodes)           C2: a model's gradient grows with the distance: it does not vanish,
                           and an exploding model never counts as vanishing less

Over a claim's decisive settings (better, worse, tie), which must come from at least
MIN_KINDS kinds of task (data sets):

    share = settings the claim's model wins / decisive settings
    supported       share >= 2/3
    not supported   share <= 1/3
    mixed           otherwise
    inconclusive    fewer than MIN_SETTINGS decisive settings, or one kind of task only

| claim | the claim's model wins a setting when ...                                        |
|-------|-----------------------------------------------------------------------------------|
| C1    | the LSTM beats the simple RNN (the report also gives each model's memory length:   |
|       | the longest delay it solved in at least two thirds of the seeds)                  |
| C2    | the LSTM's gradient vanishes less than the RNN's: its slope of log10 |dL/dx_t|     |
|       | over the distance is higher, at initialisation and after training, and it does    |
|       | not explode                                                                       |
| C3    | the LSTM has more recurrent parameters and multiply-adds per step than the RNN     |
|       | (exact counts); the measured step time is shown beside                            |
| C4    | (a) removing the forget gate costs more than removing the input and the output     |
|       | gate (each ablation a cell loop, as the full `lstm_eq`); (b) JANET beats the LSTM  |
|       | of the same implementation and the same chrono initialisation (`lstm_eq_chrono`); |
|       | supported when (a) and (b) are                                                    |
| C5    | the GRU is as good as the LSTM (better or tied) and has fewer parameters and        |
|       | multiply-adds per step; both -> supported. Measured time is shown beside           |

C6 and C7 are properties of the code, checked by tests and scripts/doc_example.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from grubench import levels
from grubench.report.evidence import Summary, bench_times, claim_runs
from grubench.report.literature import CODE_EVIDENCE, literature
from grubench.report.statistics import holm, paired, times_to_solve

MIN_SETTINGS = 2
MIN_KINDS = 2
SUPPORTED, NOT_SUPPORTED, MIXED, INCONCLUSIVE = "supported", "not supported", "mixed", "inconclusive"
BETTER, WORSE, TIE = "better", "worse", "tie"
DECISIVE = (BETTER, WORSE, TIE)
UNDERTRAINED = "inconclusive (undertrained)"
TOO_FEW_SEEDS = "inconclusive (too few seeds)"
NOT_AFTER_HOLM = "inconclusive (too few seeds for Holm's correction)"
SOLVED_SHARE = 2 / 3  # C1's memory length: solved in at least this share of the seeds

MODEL_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}  # as the claims write them
# Each outcome in the claim's own words: (better, worse, tie) for the claim's model.
WORDS = {
    "C1": ("LSTM better", "RNN better", "as good"),
    "C2": ("LSTM's gradient vanishes less", "RNN's gradient vanishes less", "vanish alike"),
    "C4a": ("removing the forget gate costs more", "removing the other gate costs more", "cost alike"),
    "C4b": ("JANET better", "LSTM better", "as good"),
    "C5": ("GRU better", "GRU worse", "GRU as good"),
}


@dataclass
class Comparison:
    """Model a against model b on one setting; `outcome` is set by `decide`."""

    claim: str
    setting: str
    kind: str
    a: str
    b: str
    deciding: bool
    cells: dict[str, str]        # per model: score, learned/solved k of n, failures, missing seeds
    test: str                    # the test that decides it
    effect: str                  # the effect, with its interval or counts
    p: float = math.nan          # of a difference
    p_equivalent: float = 1.0    # of an equivalence within the margin
    direction: int = 0           # +1: a did better, -1: b did
    blocked: str = ""            # why it cannot decide
    study: str = ""
    label: str = ""              # what is compared, when a claim compares more than one pair
    outcome: str = ""
    words: tuple[str, ...] = ()  # the outcomes better, worse, tie in the claim's words (default: WORDS)

    def row(self) -> dict:
        words = self.words or WORDS.get(self.claim)
        said = dict(zip(DECISIVE, words)).get(self.outcome, self.outcome) if words else self.outcome
        return {"setting": self.setting + (f": {self.label}" if self.label else ""), "deciding": self.deciding,
                **self.cells, "effect": self.effect, "test": self.test, "outcome": self.outcome, "said": said,
                "study": self.study}


@dataclass
class Verdict:
    claim: str
    verdict: str
    evidence: str
    comparisons: list[Comparison] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)  # "study [budget]" of the runs read
    literature: str = ""
    extra: list[str] = field(default_factory=list)    # lines the report shows under the verdict
    counted: str = ""                                  # what exact counts decide (C3, C5's cost)

    @property
    def rows(self) -> list[dict]:
        return [c.row() for c in self.comparisons]

    @property
    def deciding(self) -> list[str]:
        """Each deciding setting's outcome in the claim's words, its effect (with its interval,
        or the solved counts) and its seeds; then what exact counts decided."""
        return [f"{c.setting}{f' {c.label}' if c.label else ''}: **{c.row()['said']}**: {c.effect}"
                for c in self.comparisons if c.deciding] + ([self.counted] if self.counted else [])


def seeds_of(part: pd.DataFrame, model: str, column: str = "score") -> dict:
    rows = part[part["model"] == model]
    return {seed: float(v) for seed, v in zip(rows["seed"], rows[column]) if not pd.isna(v)}


def cell(part: pd.DataFrame, model: str, planned: set) -> str:
    """A model's numbers on a setting: score over seeds, learned and solved k of n, failures,
    the planned seeds it lacks."""
    rows = part[part["model"] == model]
    n = len(rows)
    text = f"{Summary.of(rows['score'])}; learned {int(rows['learned'].sum())}/{n}"
    if levels.ceiling(rows["kind"].iloc[0], rows["metric"].iloc[0]) is not None:
        solved = rows[rows["solved"]]
        text += f", solved {len(solved)}/{n}" + (f" (median step {int(solved['solve_step'].median())})"
                                                 if len(solved) else "")
    if rows["failed"].any():
        text += f"; {int(rows['failed'].sum())} failed"
    missing = sorted(planned - set(rows["seed"]))
    if missing:
        text += f"; seeds missing: {', '.join(str(int(s)) for s in missing)}"
    return text


def study_label(part: pd.DataFrame) -> str:
    first = part.iloc[0]
    return f"{first['study'] or '(no preset)'} [{first['budget']}]"


def compare(runs: pd.DataFrame, claim: str, setting: str, a: str, b: str, label: str = "") -> Comparison | None:
    """Model a against b on `setting` by the task's own measure (module docstring); None when
    either model has no runs there."""
    part = runs[runs["setting"] == setting]
    if not ((part["model"] == a).any() and (part["model"] == b).any()):
        return None
    first = part.iloc[0]
    kind, metric, higher = first["kind"], first["metric"], bool(first["higher"])
    planned = set(part["seed"])
    both = part[part["model"].isin([a, b])]
    result = Comparison(claim, setting, kind, a, b, bool(part["deciding"].any()),
                        {m: cell(part, m, planned) for m in order_models(part["model"].unique())}, "", "",
                        study=study_label(part), label=label)
    if not both["learned"].any():
        result.blocked = "undertrained"
    else:
        best = max(Summary.of(both.loc[both["model"] == m, "score"]).mean for m in (a, b)) if higher else math.nan
        short = levels.short_of_known(kind, metric, best)
        if short:
            result.blocked = f"short of the known level: {short}"
    if levels.ceiling(kind, metric) is not None and both["solved"].any():
        survival = times_to_solve(*[list(zip(both.loc[both["model"] == m, "solve_step"],
                                             both.loc[both["model"] == m, "solved"])) for m in (a, b)])
        if survival is None:
            return result
        result.test = "log-rank on the steps to solve (unsolved runs censored at their budget)"
        result.p, result.direction = survival.p_differ, {"a": 1, "b": -1}.get(survival.sooner, 0)
        medians = " vs ".join("never" if math.isnan(m) else f"{m:.0f}" for m in (survival.median_a, survival.median_b))
        result.effect = (f"{a} solved {survival.solved_a}/{survival.n_a} vs {b} {survival.solved_b}/{survival.n_b}, "
                         f"median step {medians}, log-rank p = {survival.p_differ:.2g}")
        if both.groupby("model")["solved"].all().all():
            budget = float(both["budget_steps"].max())
            steps = paired(seeds_of(part, a, "solve_step"), seeds_of(part, b, "solve_step"), False,
                           levels.EQUIVALENT_STEPS * budget)
            result.p_equivalent = steps.p_equivalent if steps else 1.0
        return result
    scores = paired(seeds_of(part, a), seeds_of(part, b), higher, levels.EQUIVALENT.get(metric, 0.0))
    result.test = "paired t on the scores; TOST against the margin"
    if scores is None:
        result.blocked = result.blocked or "too few seeds"
        return result
    result.p, result.p_equivalent = scores.p_differ, scores.p_equivalent
    result.direction = int(np.sign(scores.mean))
    result.effect = paired_effect(scores, a, b, metric)
    return result


def paired_effect(scores, a: str, b: str, unit: str) -> str:
    """"lstm ahead of rnn by +0.142 [+0.140, +0.144] mse (margin 0.01), better in 6/6 seeds, paired t
    p = 0.031 (sign-flip 0.031)": the mean paired difference in a's favour (negative: b ahead) with
    its 95% interval."""
    return (f"{a} ahead of {b} by {scores.mean:+.3g} [{scores.low:+.3g}, {scores.high:+.3g}] {unit} (margin "
            f"{scores.margin:.3g}), {a} better in {scores.wins}/{scores.n} seeds, paired t p = {scores.p_differ:.2g} "
            f"(sign-flip {scores.p_sign_flip:.2g})")


def compare_quantity(runs: pd.DataFrame, claim: str, setting: str, a: str, b: str, column: str, higher: bool,
                     margin: float, label: str, needs_learning: bool = False) -> Comparison | None:
    """Model a against b on `setting` by a recorded quantity other than the score (a step time, a
    gradient slope), paired by seed; None when either model lacks it there."""
    part = runs[runs["setting"] == setting]
    if column not in part or not (part.loc[part["model"] == a, column].notna().any()
                                  and part.loc[part["model"] == b, column].notna().any()):
        return None
    planned = set(part["seed"])
    values = {m: seeds_of(part, m, column) for m in (a, b)}
    cells = {m: f"{Summary.of(values[m].values())}; learned {int(part.loc[part['model'] == m, 'learned'].sum())}/"
                f"{int((part['model'] == m).sum())}" for m in (a, b)}
    result = Comparison(claim, setting, part["kind"].iloc[0], a, b, bool(part["deciding"].any()), cells,
                        "paired t on the values; TOST against the margin", "", study=study_label(part),
                        label=label)
    for m in (a, b):
        missing = sorted(planned - set(values[m]))
        if missing:
            result.cells[m] += f"; seeds missing: {', '.join(str(int(s)) for s in missing)}"
    if needs_learning and not part.loc[part["model"].isin([a, b]), "learned"].any():
        result.blocked = "undertrained"
    scores = paired(values[a], values[b], higher, margin)
    if scores is None:
        result.blocked = result.blocked or "too few seeds"
        return result
    result.p, result.p_equivalent, result.direction = scores.p_differ, scores.p_equivalent, int(np.sign(scores.mean))
    result.effect = paired_effect(scores, a, b, label)
    return result


def decide(comparisons: list[Comparison]) -> None:
    """Set every comparison's outcome: Holm's correction over the deciding, unblocked ones (for
    differences, and for equivalences); context comparisons are judged on their own."""
    family = [c for c in comparisons if c.deciding and not c.blocked and not math.isnan(c.p)]
    differ, same = holm([c.p for c in family]), holm([c.p_equivalent for c in family])
    judged = {id(c): (d, s) for c, d, s in zip(family, differ, same)}
    for c in comparisons:
        if c.blocked:
            c.outcome = f"inconclusive ({c.blocked})"
            continue
        if math.isnan(c.p):
            c.outcome = TOO_FEW_SEEDS
            continue
        differs, same_within = judged.get(id(c), (c.p <= 0.05, c.p_equivalent <= 0.05))
        if differs and c.direction:
            c.outcome = BETTER if c.direction > 0 else WORSE
        elif same_within:
            c.outcome = TIE
        elif c.direction and c.p <= 0.05:
            c.outcome = NOT_AFTER_HOLM
        else:
            c.outcome = TOO_FEW_SEEDS


def share_rule(comparisons: list[Comparison], wins=(BETTER,)) -> tuple[str, str]:
    """The verdict from the deciding comparisons' outcomes, and a count that says why."""
    deciding = [c for c in comparisons if c.deciding]
    decisive = [c for c in deciding if c.outcome in DECISIVE]
    undecided = Counter(c.outcome.removeprefix("inconclusive (").rstrip(")") for c in deciding
                        if c.outcome not in DECISIVE)
    why = ", ".join(f"{n} {reason}" for reason, n in undecided.items())
    kinds = sorted({c.kind for c in decisive})
    if not deciding:
        return INCONCLUSIVE, "no deciding setting: the runs' presets name none for this claim"
    won = sum(c.outcome in wins for c in decisive)
    if len(decisive) < MIN_SETTINGS or len(kinds) < MIN_KINDS:
        return INCONCLUSIVE, (f"too few settings: {len(decisive)} decided ({won} for the claim, {len(decisive) - won} "
                              f"against) from {len(kinds)} kind(s) of task, {MIN_SETTINGS} from {MIN_KINDS} kinds "
                              "needed" + (f"; undecided: {why}" if why else ""))
    share = won / len(decisive)
    verdict = SUPPORTED if share >= 2 / 3 else NOT_SUPPORTED if share <= 1 / 3 else MIXED
    return verdict, (f"{won} of {len(decisive)} decided settings ({', '.join(kinds)})"
                     + (f"; undecided: {why}" if why else ""))


def combine(parts: list[str]) -> str:
    """One verdict from the verdicts of a claim's parts (C4, C5)."""
    if INCONCLUSIVE in parts:
        return INCONCLUSIVE
    if all(p == SUPPORTED for p in parts):
        return SUPPORTED
    if all(p == NOT_SUPPORTED for p in parts):
        return NOT_SUPPORTED
    return MIXED


def order_models(models, first=("rnn", "gru", "lstm")) -> list[str]:
    return [m for m in first if m in models] + sorted(m for m in models if m not in first)


def setting_order(setting: str):
    """"adding T=30 H=64" sorts by data set, then length, then width, as numbers."""
    numbers = [int(part[2:]) for part in setting.split() if part[:2] in ("T=", "H=") and part[2:].isdigit()]
    return (setting.split()[0], *numbers)


def settings_of(runs: pd.DataFrame) -> list[str]:
    return sorted(runs["setting"].unique(), key=setting_order) if not runs.empty else []


def pairs(runs: pd.DataFrame, claim: str, a: str, b: str, label: str = "") -> list[Comparison]:
    return [c for s in settings_of(runs) if (c := compare(runs, claim, s, a, b, label)) is not None]


def studies(comparisons: list[Comparison]) -> list[str]:
    return list(dict.fromkeys(c.study for c in comparisons if c.study))


def cost(runs: pd.DataFrame) -> str:
    """What the claim's runs cost: their number and CPU-seconds (wall time x torch threads)."""
    if runs.empty or "end_time" not in runs:
        return "no runs"
    seconds = (pd.to_datetime(runs["end_time"]) - pd.to_datetime(runs["start_time"])).dt.total_seconds()
    threads = pd.to_numeric(runs.get("params.threads"), errors="coerce").fillna(1) if "params.threads" in runs else 1
    return f"{len(runs)} runs, {float((seconds * threads).sum()):,.0f} CPU-seconds (wall time x threads)"


def verdict_of(claim: str, verdict: str, evidence: str, comparisons: list[Comparison], runs: pd.DataFrame,
               wins=(BETTER,), extra: list[str] = ()) -> Verdict:
    read = studies(comparisons)
    return Verdict(claim, verdict, evidence, comparisons, read,
                   literature(claim, verdict, [c.row() for c in comparisons], read, wins),
                   [*extra, f"Cost: {cost(runs)}"])


def memory_lengths(runs: pd.DataFrame) -> dict[str, float]:
    """C1: per model, the longest adding length it solved in at least SOLVED_SHARE of its seeds
    (0: none of the lengths run)."""
    if runs.empty:
        return {}
    adding = runs[runs["kind"] == "adding"]
    lengths = {}
    for model, group in adding.groupby("model"):
        shares = group.groupby("length")["solved"].mean()
        solved = shares[shares >= SOLVED_SHARE - 1e-9]
        lengths[model] = float(solved.index.max()) if len(solved) else 0.0
    return lengths


def c1(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C1")
    comparisons = pairs(runs, "C1", "lstm", "rnn")
    decide(comparisons)
    verdict, count = share_rule(comparisons)
    memory = memory_lengths(runs)
    extra = [("Memory length, the longest adding length solved in at least two thirds of the seeds: "
              + ", ".join(f"{m} {int(t) if t else 'none'}" for m, t in sorted(memory.items(), key=lambda x: x[1])))
             ] if memory else []
    return verdict_of("C1", verdict, f"LSTM better than the RNN on {count}", comparisons, runs, extra=extra)


# C2's quantity: the slope of log10 |dL/dx_t| over the distance (log10 per step), at initialisation
# and at the study's fixed training step (grubench.gradflow, evidence.gradient_slopes); higher is
# less vanishing. The slope for the whole state (for the LSTM (h_t, c_t)) is shown beside.
GRADIENT_STAGES = {"init": "x_slope_init", "trained": "x_slope_trained"}
STATE_STAGES = {"init": "state_slope_init", "trained": "state_slope_trained"}


def c2(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C2")
    comparisons = []
    for setting in settings_of(runs):
        for deciding, stages in ((True, GRADIENT_STAGES), (False, STATE_STAGES)):
            for stage, column in stages.items():
                c = compare_quantity(runs, "C2", setting, "lstm", "rnn", column, True, levels.EQUIVALENT_SLOPE,
                                     f"{stage} {column.split('_')[0]}-slope", needs_learning=stage == "trained")
                if c is None:
                    continue
                c.deciding = c.deciding and deciding
                part = runs[(runs["setting"] == setting) & runs["model"].isin(["lstm", "rnn"])]
                exploding = [m for m, g in part.groupby("model") if g[column].median() > levels.EQUIVALENT_SLOPE]
                if exploding:
                    c.blocked = f"{' and '.join(exploding)} explodes"
                comparisons.append(c)
    decide(comparisons)
    verdict, count = share_rule(comparisons)
    return verdict_of("C2", verdict, "slope of log10 |dL/dx_t| over the distance (log10 per step), higher is "
                      f"less vanishing, exploding never counts: LSTM higher than the RNN on {count}", comparisons, runs)


def counts(runs: pd.DataFrame, model: str, rival: str) -> tuple[float, float]:
    """(recurrent parameters, multiply-adds per step) of model / rival: exact counts each run
    records (grubench.models.counting), as a ratio within each setting (the input size differs
    between tasks), the median over the settings where both ran; NaN where not recorded."""
    ratios = []
    for column in ("metrics.params/recurrent", "metrics.flops/step"):
        if column not in runs:
            ratios.append(math.nan)
            continue
        per_setting = runs.groupby(["setting", "model"])[column].median().unstack("model")
        if model not in per_setting or rival not in per_setting:
            ratios.append(math.nan)
            continue
        ratios.append(float((per_setting[model] / per_setting[rival]).median()))
    return ratios[0], ratios[1]


def cheaper_verdict(ratios: tuple[float, float], more: bool) -> str:
    """SUPPORTED when both ratios are above 1 (`more`) or below 1, NOT_SUPPORTED otherwise,
    INCONCLUSIVE when not recorded."""
    if any(math.isnan(r) for r in ratios):
        return INCONCLUSIVE
    return SUPPORTED if all((r > 1) if more else (r < 1) for r in ratios) else NOT_SUPPORTED


def ratios_text(ratios: tuple[float, float], model: str, rival: str) -> str:
    return (f"{model}/{rival} recurrent parameters {ratios[0]:.2f}, multiply-adds per step {ratios[1]:.2f}"
            if not any(math.isnan(r) for r in ratios) else f"{model}/{rival} counts not recorded")


def step_times(runs: pd.DataFrame, claim: str, model: str, rival: str) -> list[Comparison]:
    """Context: measured training-step time (median ms) of model against rival, paired by seed."""
    found = [compare_quantity(runs, claim, s, model, rival, "metrics.speed/step_ms", False, levels.EQUIVALENT_TIME,
                              "step ms") for s in settings_of(runs)]
    for c in (c for c in found if c is not None):
        c.deciding = False
        c.words = (f"{MODEL_NAMES.get(model, model)} faster", f"{MODEL_NAMES.get(model, model)} slower", "as fast")
    return [c for c in found if c is not None]


def kernel_times(frame: pd.DataFrame, pairs_of_models: list[tuple[str, str]]) -> list[str]:
    """Lines that set measured step times beside a claim's counts, from the benchmark's cells
    (python -m grubench.bench grid=claims): the time ratio of each pair of kernels of the same
    kind (fused against fused, cell loop against cell loop) per device and width, the median of
    the rounds. None where the benchmark has not run."""
    table = bench_times(frame)
    lines = []
    for a, b in pairs_of_models:
        if table.empty or not {a, b} <= set(table["model"]):
            continue
        keys = ["device", "precision", "batch", "seq_len", "hidden"]
        both = table[table["model"] == a].merge(table[table["model"] == b], on=keys, suffixes=("_a", "_b"))
        for (device, batch, seq_len), group in both.groupby(["device", "batch", "seq_len"]):
            ratios = ", ".join(f"H {int(r.hidden)}: {r.train_ms_a / r.train_ms_b:.2f}"
                               for r in group.sort_values("hidden").itertuples())
            rounds = int(group[["rounds_a", "rounds_b"]].min().min())
            lines.append(f"Measured step time {a}/{b} ({device}, batch {batch}, length {seq_len}, median of {rounds} "
                         f"round(s), python -m grubench.bench grid=claims): {ratios}")
    return lines or ["Measured step time of kernels of the same kind: not measured (python -m grubench.bench "
                     "grid=claims rounds=3)"]


def c3(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C3")
    ratios = counts(runs, "lstm", "rnn") if not runs.empty else (math.nan, math.nan)
    times = step_times(runs, "C3", "lstm", "rnn") if not runs.empty else []
    decide(times)
    verdict = cheaper_verdict(ratios, more=True)
    found = verdict_of("C3", verdict, f"{ratios_text(ratios, 'LSTM', 'RNN')} (exact counts decide; measured step "
                       "time beside)", times, runs, wins=(WORSE,), extra=kernel_times(frame, [("lstm", "rnn")]))
    found.counted = f"exact counts: **{'costlier' if verdict == SUPPORTED else verdict}**: {ratios_text(ratios, 'LSTM', 'RNN')}"
    return found


def forget_gate_outcome(vs_input: str, vs_output: str) -> str:
    """C4 (a) on one setting, "did removing the forget gate cost the most?", from the LSTM without
    its forget gate against the one without its input gate and the one without its output gate:

        better        worse than both: removing the forget gate cost the most
        worse         better than one of them: removing that other gate cost more
        tie           tied with one of them, worse than or tied with the other
        inconclusive  otherwise (the first inconclusive reason)
    """
    pair = (vs_input, vs_output)
    if pair == (WORSE, WORSE):
        return BETTER
    if BETTER in pair:
        return WORSE
    if TIE in pair and all(o in (TIE, WORSE) for o in pair):
        return TIE
    return next(o for o in pair if o not in DECISIVE)


def c4(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C4")
    vs_input = {c.setting: c for c in pairs(runs, "C4", "lstm_nfg", "lstm_nig", "without forget vs without input")}
    vs_output = {c.setting: c for c in pairs(runs, "C4", "lstm_nfg", "lstm_nog", "without forget vs without output")}
    janet = pairs(runs, "C4", "janet", "lstm_eq_chrono", "(b) JANET vs the LSTM of the same chrono init")
    context = [c for ablation in ("lstm_nfg", "lstm_nig", "lstm_nog")
               for c in pairs(runs, "C4", ablation, "lstm_eq", f"{ablation} vs the full LSTM (lstm_eq)")]
    context += pairs(runs, "C4", "janet", "lstm", "JANET vs torch's LSTM")
    for c in context:
        c.deciding = False
    decide([*vs_input.values(), *vs_output.values(), *janet, *context])
    forget = []
    for setting in sorted(set(vs_input) & set(vs_output), key=setting_order):
        first, second = vs_input[setting], vs_output[setting]
        combined = Comparison("C4a", setting, first.kind, "lstm_nfg", "lstm_nig, lstm_nog", first.deciding,
                              {**first.cells, **second.cells}, first.test, f"{first.effect}; {second.effect}",
                              study=first.study, label="(a) the forget gate matters most")
        combined.outcome = forget_gate_outcome(first.outcome, second.outcome)
        forget.append(combined)
    for c in janet:
        c.claim = "C4b"
    forget_verdict, forget_count = share_rule(forget)
    janet_verdict, janet_count = share_rule(janet)
    evidence = (f"(a) {forget_verdict}: removing the forget gate costs more than removing the input and the output "
                f"gate on {forget_count}; (b) {janet_verdict}: JANET better than the LSTM of the same implementation "
                f"and initialisation on {janet_count}")
    return verdict_of("C4", combine([forget_verdict, janet_verdict]), evidence, forget + janet + context, runs)


def c5(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C5")
    comparisons = pairs(runs, "C5", "gru", "lstm")
    times = step_times(runs, "C5", "gru", "lstm") if not runs.empty else []
    decide(comparisons + times)
    as_good, count = share_rule(comparisons, wins=(BETTER, TIE))
    ratios = counts(runs, "gru", "lstm") if not runs.empty else (math.nan, math.nan)
    cheaper = cheaper_verdict(ratios, more=False)
    evidence = (f"as good: {as_good}, the GRU as good as the LSTM (better or tied) on {count}; cheaper: {cheaper}, "
                f"{ratios_text(ratios, 'GRU', 'LSTM')}; measured step time beside")
    found = verdict_of("C5", combine([as_good, cheaper]), evidence, comparisons + times, runs, wins=(BETTER, TIE),
                       extra=kernel_times(frame, [("gru", "lstm"), ("gru_doc", "lstm_eq")]))
    found.counted = (f"exact counts: **{'cheaper' if cheaper == SUPPORTED else cheaper}**: "
                     f"{ratios_text(ratios, 'GRU', 'LSTM')}")
    return found


RULES = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5}


def all_verdicts(frame: pd.DataFrame) -> list[Verdict]:
    verdicts = [rule(frame) for rule in RULES.values()]
    verdicts += [Verdict(c, "see tests", CODE_EVIDENCE[c]) for c in ("C6", "C7")]
    return verdicts

