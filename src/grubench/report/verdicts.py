"""The verdict rules: how recorded runs decide each claim of the document.

Every rule compares two models setting by setting (`judge`) and ends each setting with one outcome:

    better / worse     the claim's model against its rival: Welch's 95% interval of the difference
                       of the mean test scores over seeds excludes zero
    tie                both models learned and the interval includes zero
    inconclusive       the setting says nothing about the claim, for one of three reasons:
      (undertrained)     neither model beat chance by the margin of `grubench.levels`: a budget
                         too small to learn the task cannot tell the models apart
      (at ceiling)       both reached the task's ceiling (adding MSE <= 0.01, copy accuracy
                         >= 0.99) and learned equally fast: solve/step, the first step at the
                         solved level, is compared first, and only a tie there is inconclusive
      (too few seeds)    a model has fewer than MIN_SEEDS seeds, or one model learned and the
                         other did not but the seeds scatter too much to separate them

Inconclusive settings count for nothing. Over the decisive ones (better, worse, tie):

    share = settings the claim's model wins / decisive settings
    supported       share >= 2/3
    not supported   share <= 1/3
    mixed           otherwise
    inconclusive    fewer than MIN_SETTINGS decisive settings; the verdict says why

| claim | the claim's model wins a setting when ...                                         | runs read |
|-------|------------------------------------------------------------------------------------|-----------|
| C1    | LSTM's test score is better than the simple RNN's                                  | tagged C1 |
| C2    | LSTM's gradient decay grad/decay_log10 is less negative than the RNN's, at          | tagged C2 |
|       | initialisation and after training (each stage of each setting counts once; the     |           |
|       | trained stage is inconclusive where neither model learned the task)               |           |
| C3    | LSTM has more recurrent parameters than the RNN and its step takes longer           | tagged C3 |
| C4    | (a) removing the forget gate costs more than removing the input and the output gate | tagged C4 |
|       | (`forget_gate_outcome`: better or tied against one of them decides against)         |           |
|       | (b) JANET's score is better than the LSTM's; C4 is supported when (a) and (b) are, |           |
|       | not supported when neither is, inconclusive when either is, mixed otherwise         |           |
| C5    | the GRU is not worse than the LSTM (better or tied), with fewer parameters and a   | tagged C5 |
|       | step no slower: all three supported -> supported                                   |           |

C4 and C5 compare with `lstm`, the standard LSTM; other models in the same study (an LSTM with
forget-gate bias 1, minimal GRU/LSTM) are shown beside it in the tables but decide nothing.
Step time and parameter counts (C3, C5) need no learning, so only the seed rule applies to them.
C6 and C7 are properties of the code, checked by tests and scripts/doc_example.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from grubench import levels
from grubench.report.evidence import (
    Summary,
    claim_runs,
    compare,
    summarise,
    task_of,
)
from grubench.spec import higher_is_better

MIN_SEEDS = 2
MIN_SETTINGS = 2
SUPPORTED, NOT_SUPPORTED, MIXED, INCONCLUSIVE = "supported", "not supported", "mixed", "inconclusive"
BETTER, WORSE, TIE = "better", "worse", "tie"
DECISIVE = (BETTER, WORSE, TIE)
UNDERTRAINED = "inconclusive (undertrained)"
AT_CEILING = "inconclusive (at ceiling)"
TOO_FEW_SEEDS = "inconclusive (too few seeds)"

PUBLISHED = {
    "C1": "Sequential MNIST (Cooijmans et al. 2017, Table 1): tanh RNN 35.0% vs LSTM 98.9%. Chung et al. 2014, "
          "JSB Chorales test NLL/step: tanh RNN 9.19, GRU 8.54, LSTM 8.67. MNIST-1D: GRU 91% test accuracy.",
    "C2": "Hochreiter & Schmidhuber 1997: the constant error carousel keeps gradients from vanishing; "
          "Bengio et al. 1994: a tanh RNN's gradient decays exponentially with the distance in time.",
    "C3": "Parameters for input 100, 64 units (Keras): LSTM 42,240 vs SimpleRNN 10,560 (4x). DeepBench (V100, "
          "hidden 2048): time per step RNN : LSTM about 1 : 2.",
    "C4": "JANET: MNIST 99.0% vs LSTM 98.5%, pMNIST 92.5% vs 91.0% (van der Westhuizen & Lasenby 2018); "
          "Greff et al. 2017: the forget gate and output activation are the LSTM's most critical parts.",
    "C5": "Chung et al. 2014: GRU 8.54 vs LSTM 8.67 NLL on JSB. cuDNN: GRU takes 0.66-0.83 of the LSTM's "
          "training time at hidden 512-1024, about the same at 128. Parameters: GRU 31,872 vs LSTM 42,496 "
          "(PyTorch, 100 -> 64).",
    "C6": "The document's equations (Chung et al. 2014 GRU).",
    "C7": "The document's Keras example: [2, 80, 100] -> [2, 64].",
}

# The verdict each claim gets from the published results, and how the papers' protocols differ
# from a small study (the likely reasons where ours differs).
EXPECTED = {"C1": SUPPORTED, "C2": SUPPORTED, "C3": SUPPORTED, "C4": SUPPORTED, "C5": SUPPORTED}
PROTOCOL = {
    "C1": "the papers train 100-128 units for tens of thousands of steps on real sequences of 784 steps",
    "C2": "the papers reason about gradients over hundreds of steps; the LSTM here starts with PyTorch's "
          "forget-gate bias around 0, so its cell passes about half the gradient per step at initialisation "
          "(Jozefowicz et al. 2015 set that bias to 1)",
    "C3": "the published times are cuDNN kernels at hidden 512-2048 on a GPU; small CPU models are dominated "
          "by per-step overheads",
    "C4": "JANET was trained on (permuted) MNIST for 100s of epochs with chrono initialisation; Greff et al. "
          "ran 5,400 trials on speech, handwriting and music",
    "C5": "Chung et al. sized every model to about 20k parameters and trained to convergence on music; the "
          "cuDNN speed figures are for GPU kernels, and on a CPU torch's fused GRU step is not cheaper than its "
          "LSTM step (docs/models.md measures both)",
}

CODE_EVIDENCE = {
    "C6": "tests/test_cells.py (gate semantics of the document's GRUCell)",
    "C7": "scripts/doc_example.py and tests/test_cells.py (hand-unrolled cell equals the layer; 2-layer stack -> [2, 64])",
}


@dataclass
class Verdict:
    claim: str
    verdict: str
    evidence: str
    rows: list[dict] = field(default_factory=list)  # per-setting numbers for the report's tables
    decisive: list[str] = field(default_factory=list)  # the settings the verdict rests on
    studies: list[str] = field(default_factory=list)  # "study (budget)" of the runs read
    literature: str = ""  # how the verdict stands against the published result

    def __post_init__(self):
        if not self.literature and self.claim in EXPECTED:
            self.literature = literature(self)


def judge(a: Summary, b: Summary, higher: bool, dataset: str = "", metric: str = "", chance: float = math.nan,
          steps_a: Summary | None = None, steps_b: Summary | None = None, needs_learning: bool = True) -> str:
    """The outcome for model a against model b on one setting (module docstring). `a`, `b`: the
    compared metric over seeds; `dataset`, `metric`, `chance`: the task, for the learning and
    ceiling rules (which look at the means of the test scores in `a` and `b`, or, with
    `needs_learning=False`, are skipped); `steps_a`, `steps_b`: solve/step over seeds."""
    if a.n < MIN_SEEDS or b.n < MIN_SEEDS:
        return TOO_FEW_SEEDS
    if not needs_learning:
        return compare(a, b, higher)
    learned_a, learned_b = (levels.learned(s.mean, chance, metric) for s in (a, b))
    if not learned_a and not learned_b:
        return UNDERTRAINED
    if levels.at_ceiling(a.mean, dataset, metric) and levels.at_ceiling(b.mean, dataset, metric):
        speed = compare(steps_a, steps_b, False) if steps_a and steps_b else "unknown"
        return speed if speed in (BETTER, WORSE) else AT_CEILING
    outcome = compare(a, b, higher)
    if outcome == TIE and not (learned_a and learned_b):
        return TOO_FEW_SEEDS
    return outcome


# The outcomes that count for a claim: C3's LSTM "wins" where it is slower (worse step time);
# C5's GRU where it is not worse (better or tied); every other claim's model where it is better.
WINS = {"C3": (WORSE,), "C5": (BETTER, TIE)}


def share_rule(outcomes: list[str], wins=(BETTER,)) -> tuple[str, str]:
    """The verdict from per-setting outcomes, and a one-line count that says why."""
    decisive = [o for o in outcomes if o in DECISIVE]
    skipped = Counter(o.removeprefix("inconclusive (").rstrip(")") for o in outcomes if o not in DECISIVE)
    why = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    if len(decisive) < MIN_SETTINGS:
        return INCONCLUSIVE, (f"{len(decisive)} decisive settings ({MIN_SETTINGS} needed; "
                              + (f"inconclusive: {why})" if why else "no setting has runs of both models)"))
    won = sum(o in wins for o in decisive)
    share = won / len(decisive)
    verdict = SUPPORTED if share >= 2 / 3 else NOT_SUPPORTED if share <= 1 / 3 else MIXED
    return verdict, f"{won} of {len(decisive)} decisive settings" + (f" ({why} inconclusive)" if why else "")


def combine(parts: list[str]) -> str:
    """One verdict from the verdicts of a claim's parts (C4, C5)."""
    if INCONCLUSIVE in parts:
        return INCONCLUSIVE
    if all(p == SUPPORTED for p in parts):
        return SUPPORTED
    if all(p == NOT_SUPPORTED for p in parts):
        return NOT_SUPPORTED
    return MIXED


def model_cells(runs: pd.DataFrame, setting: str) -> dict[str, str]:
    """{model: "score mean ± interval (n); solved k/n, median step s"} for every model of a setting."""
    part = runs[runs["setting"] == setting]
    cells = {}
    for model, group in part.groupby("tags.model"):
        text = str(Summary.of(group["score"]))
        if "metrics.solve/solved" in group and group["metrics.solve/solved"].notna().any():
            # a run at chance has not solved anything, whatever its relative level says
            learned = pd.Series([levels.learned(score, chance, metric) for score, chance, metric in
                                 zip(group["score"], group["chance"], group["tags.task/metric"])], index=group.index)
            solved = group[(group["metrics.solve/solved"] == 1) & learned]
            text += f"; solved {len(solved)}/{len(group)}"
            if len(solved):
                text += f" by step {int(solved['metrics.solve/step'].median())}"
        cells[model] = text
    return cells


def order_models(models, first=("rnn", "gru", "lstm")) -> list[str]:
    return [m for m in first if m in models] + sorted(m for m in models if m not in first)


def pairwise(runs: pd.DataFrame, model: str, rival: str, column: str = "score", higher: bool | None = None,
             needs_learning: bool = True) -> list[dict]:
    """Per setting: every model's numbers and the outcome for `model` against `rival`."""
    if runs.empty or column not in runs:
        return []
    summaries = summarise(runs, column)
    scores = summarise(runs, "score")
    steps = summarise(runs, "solve_step")
    rows = []
    for setting in sorted({s for s, _ in summaries}, key=setting_order):
        a, b = summaries.get((setting, model)), summaries.get((setting, rival))
        if a is None or b is None:
            continue
        dataset, metric, chance = task_of(runs, setting)
        up = higher_is_better(metric) if higher is None else higher
        if column == "score":
            outcome = judge(a, b, up, dataset, metric, chance, steps.get((setting, model)), steps.get((setting, rival)),
                            needs_learning)
        elif needs_learning:  # another metric, valid only where a model learned the task
            learned = judge(scores[(setting, model)], scores[(setting, rival)], True, dataset, metric, chance)
            outcome = learned if learned == UNDERTRAINED else judge(a, b, up, needs_learning=False)
        else:
            outcome = judge(a, b, up, needs_learning=False)
        if outcome == "unknown":
            outcome = TOO_FEW_SEEDS
        cells = model_cells(runs, setting) if column == "score" else {
            m: str(summaries[(setting, m)]) for m in order_models({m for s, m in summaries if s == setting})}
        rows.append({"setting": setting, "study": study_label(runs, setting),
                     **{m: cells[m] for m in order_models(cells)}, "outcome": outcome})
    return rows


def study_label(runs: pd.DataFrame, setting: str) -> str:
    part = runs[runs["setting"] == setting].iloc[0]
    return f"{part['study'] or '(no preset)'} [{part['budget']}]"


def studies(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["study"] for r in rows if "study" in r))


def decisive_settings(rows: list[dict]) -> list[str]:
    return [f"{r['setting']}: {r['outcome']}" for r in rows if r["outcome"] in DECISIVE]


def setting_order(setting: str):
    """"adding T=30 H=64" sorts by data set, then length, then width, as numbers."""
    numbers = [int(part[2:]) for part in setting.split() if part[:2] in ("T=", "H=") and part[2:].isdigit()]
    return (setting.split()[0], *numbers)


def verdict_of(claim: str, verdict: str, evidence: str, rows: list[dict]) -> Verdict:
    return Verdict(claim, verdict, evidence, rows, decisive_settings(rows), studies(rows))


def c1(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C1")
    rows = pairwise(runs, "lstm", "rnn")
    verdict, count = share_rule([r["outcome"] for r in rows])
    return verdict_of("C1", verdict, f"LSTM better than the RNN on {count}", rows)


def c2(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C2")
    rows = []
    for stage, column in (("init", "metrics.grad/decay_log10_init"), ("trained", "metrics.grad/decay_log10_trained")):
        for row in pairwise(runs, "lstm", "rnn", column, higher=True, needs_learning=stage == "trained"):
            rows.append({**row, "setting": f"{row['setting']} ({stage})"})
    verdict, count = share_rule([r["outcome"] for r in rows])
    return verdict_of("C2", verdict, "log10(‖dL/dh_1‖ / ‖dL/dh_T‖), higher is less vanishing: LSTM higher than "
                      f"the RNN on {count}", rows)


def ratio_text(ratio: float) -> str:
    return "not recorded" if math.isnan(ratio) else f"{ratio:.2f}"


def cost_rows(runs: pd.DataFrame, model: str, rival: str) -> tuple[list[dict], float]:
    """Step-time comparisons (lower is better) and the ratio of recurrent parameters."""
    if runs.empty or "metrics.speed/step_ms" not in runs:
        return [], math.nan
    rows = pairwise(runs, model, rival, "metrics.speed/step_ms", higher=False, needs_learning=False)
    params = runs.groupby("tags.model")["metrics.params/recurrent"].median() \
        if "metrics.params/recurrent" in runs else pd.Series(dtype=float)
    ratio = params.get(model, math.nan) / params.get(rival, math.nan) if len(params) else math.nan
    return rows, ratio


def c3(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C3")
    rows, ratio = cost_rows(runs, "lstm", "rnn")
    verdict, count = share_rule([r["outcome"] for r in rows], wins=WINS["C3"])
    if verdict != INCONCLUSIVE and not ratio > 1:
        verdict = NOT_SUPPORTED
    return verdict_of("C3", verdict, f"LSTM/RNN recurrent parameters = {ratio_text(ratio)}; LSTM training step "
                      f"(median ms) slower than the RNN's on {count}", rows)


def forget_gate_outcome(vs_input: str, vs_output: str) -> str:
    """C4 (a) on one setting, "did removing the forget gate cost the most?", from the LSTM without
    its forget gate against the LSTM without its input gate and against the LSTM without its
    output gate:

        better        worse than both: removing the forget gate cost the most
        worse         better than one of them: removing that other gate cost more
        tie           tied with one of them, better than neither
        inconclusive  otherwise: worse than one, and the other comparison inconclusive
    """
    pair = (vs_input, vs_output)
    if pair == (WORSE, WORSE):
        return BETTER
    if BETTER in pair:
        return WORSE
    if TIE in pair:
        return TIE
    return next(o for o in pair if o not in DECISIVE)


def c4(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C4")
    forget_rows = []
    vs_input = {r["setting"]: r["outcome"] for r in pairwise(runs, "lstm_nfg", "lstm_nig")}
    vs_output = {r["setting"]: r["outcome"] for r in pairwise(runs, "lstm_nfg", "lstm_nog")}
    for setting in sorted(set(vs_input) & set(vs_output), key=setting_order):
        outcome = forget_gate_outcome(vs_input[setting], vs_output[setting])
        cells = model_cells(runs, setting)
        forget_rows.append({"setting": f"{setting}: (a) forget gate matters most", "study": study_label(runs, setting),
                            **{m: cells[m] for m in order_models(cells, ("lstm", "lstm_nfg", "lstm_nig", "lstm_nog"))},
                            "outcome": outcome})
    forget_verdict, forget_count = share_rule([r["outcome"] for r in forget_rows])
    janet_rows = [{**r, "setting": f"{r['setting']}: (b) janet beats lstm"} for r in pairwise(runs, "janet", "lstm")]
    janet_verdict, janet_count = share_rule([r["outcome"] for r in janet_rows])
    evidence = (f"(a) without the forget gate the LSTM is worse than without the input and the output gate on "
                f"{forget_count}: {forget_verdict}; (b) JANET better than the LSTM on {janet_count}: {janet_verdict}")
    return verdict_of("C4", combine([forget_verdict, janet_verdict]), evidence, forget_rows + janet_rows)


def c5(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C5")
    rows = pairwise(runs, "gru", "lstm")
    as_well, count = share_rule([r["outcome"] for r in rows], wins=WINS["C5"])
    time_rows, ratio = cost_rows(runs, "gru", "lstm")
    faster, time_count = share_rule([r["outcome"] for r in time_rows], wins=WINS["C5"])
    cheaper = INCONCLUSIVE if math.isnan(ratio) else SUPPORTED if ratio < 1 else NOT_SUPPORTED
    evidence = (f"GRU not worse than the LSTM on {count} ({as_well}); GRU/LSTM recurrent parameters = "
                f"{ratio_text(ratio)}; GRU training step no slower on {time_count} ({faster})")
    return verdict_of("C5", combine([as_well, faster, cheaper]), evidence,
                      rows + [{**r, "setting": f"{r['setting']} step ms"} for r in time_rows])


def literature(v: Verdict) -> str:
    """Where the verdict stands against the published result, and the likely reason where it
    differs, from the verdict's own rows: which settings went against the claim, which could
    not decide and why, and how the papers' protocol differs."""
    expected = EXPECTED[v.claim]
    if v.verdict == expected:
        return f"Agrees with the published result ({expected})."
    outcomes = Counter(r["outcome"] for r in v.rows)
    wins = WINS.get(v.claim, (BETTER,))
    against = [r["setting"] for r in v.rows if r["outcome"] in DECISIVE and r["outcome"] not in wins]
    parts = [f"Differs: published {expected}, ours {v.verdict}."]
    if v.verdict == INCONCLUSIVE:
        reasons = {UNDERTRAINED: "no model beat chance (budget too small for the task)",
                   AT_CEILING: "every model solved the task equally fast (the settings are too easy)",
                   TOO_FEW_SEEDS: "too few seeds, or the seeds disagree"}
        found = [f"{outcomes[o]} setting{'s' * (outcomes[o] != 1)}: {text}" for o, text in reasons.items() if outcomes[o]]
        parts.append("Likely reason: " + ("; ".join(found) if found else "no runs for this claim") + ".")
    elif against:
        parts.append(f"Against the claim: {', '.join(against)}.")
        ties = sum(r["outcome"] == TIE for r in v.rows if r["setting"] in against)
        if ties:
            parts.append(f"{ties} of these are ties: the 95% intervals over seeds overlap, and more seeds would "
                         "narrow them.")
    ours = ", ".join(dict.fromkeys(s.split(" [")[0] for s in v.studies)) or "no study"
    parts.append(f"Protocol: {PROTOCOL[v.claim]}; ours: {ours} (budgets under the claim).")
    return " ".join(parts)


RULES = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5}


def all_verdicts(frame: pd.DataFrame) -> list[Verdict]:
    verdicts = [rule(frame) for rule in RULES.values()]
    verdicts += [Verdict(c, "see tests", CODE_EVIDENCE[c]) for c in ("C6", "C7")]
    return verdicts
