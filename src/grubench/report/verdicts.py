"""The verdict rules: how recorded runs decide each claim of the document.

Every rule compares two models setting by setting (`evidence.compare`: Welch's 95% interval of
the difference of the means over seeds must exclude zero), then counts:

    share = settings where the claim's model wins / settings with at least MIN_SEEDS seeds each

    supported       share >= 2/3
    not supported   share <= 1/3
    mixed           otherwise
    not enough runs fewer than MIN_SETTINGS settings could be compared

| claim | the claim's model wins a setting when ...                                        | runs read              |
|-------|-----------------------------------------------------------------------------------|------------------------|
| C1    | LSTM's test score is better than the simple RNN's                                 | tagged C1              |
| C2    | LSTM's gradient decay grad/decay_log10 is less negative than the RNN's, at         | tagged C2              |
|       | initialisation and after training (each stage of each setting counts once)        |                        |
| C3    | LSTM has more recurrent parameters than the RNN and its step takes longer          | tagged C3              |
| C4    | (a) removing the forget gate costs more than removing the input or the output gate | tagged C4              |
|       | (b) JANET's score is better than the LSTM's; C4 is supported when (a) and (b) are, |                        |
|       | not supported when neither is, mixed otherwise                                    |                        |
| C5    | the GRU is not worse than the LSTM (better or tied), with fewer parameters and a  | tagged C5              |
|       | step no slower: all three supported -> supported                                  |                        |

C6 and C7 are properties of the code, checked by tests and scripts/doc_example.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from grubench.report.evidence import Summary, claim_runs, compare, higher_is_better, summarise

MIN_SEEDS = 2
MIN_SETTINGS = 2
SUPPORTED, NOT_SUPPORTED, MIXED, NOT_ENOUGH = "supported", "not supported", "mixed", "not enough runs"

CLAIMS = {
    "C1": "LSTM has a longer memory than a basic RNN and beats it on most sequence tasks",
    "C2": "LSTM is less prone to vanishing gradients than a basic RNN",
    "C3": "LSTM is expensive: many parameters, costly to compute",
    "C4": "the forget gate matters most; a forget-gate-only network (JANET) beats a standard LSTM",
    "C5": "the GRU (two gates, one state) is a cheaper simplification of the LSTM that works as well",
    "C6": "gate semantics: r=0 takes the candidate from x_t alone; z=0 keeps h_{t-1}; z=1 takes the candidate",
    "C7": "a GRUCell unrolled by hand is the GRU layer; GRU layers stack",
}

PUBLISHED = {
    "C1": "Chung et al. 2014, JSB Chorales test NLL/step: tanh RNN 9.19, GRU 8.54, LSTM 8.67. "
          "MNIST-1D: GRU 91% test accuracy (MLP 68%, CNN 94%).",
    "C2": "Hochreiter & Schmidhuber 1997: the constant error carousel keeps gradients from vanishing.",
    "C3": "Parameters for input 100, 64 units (Keras): LSTM 42,240 vs SimpleRNN 10,560 (4x).",
    "C4": "JANET: MNIST 99.0% vs LSTM 98.5%, pMNIST 92.5% vs 91.0% (van der Westhuizen & Lasenby 2018); "
          "Greff et al. 2017: the forget gate and output activation are the LSTM's most critical parts.",
    "C5": "Chung et al. 2014: GRU 8.54 vs LSTM 8.67 NLL on JSB. cuDNN: GRU takes 0.66-0.83 of the LSTM's "
          "training time at hidden 512-1024, about the same at 128. Parameters: GRU 31,872 vs LSTM 42,496 (PyTorch, 100 -> 64).",
    "C6": "The document's equations (Chung et al. 2014 GRU).",
    "C7": "The document's Keras example: [2, 80, 100] -> [2, 64].",
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


def share_rule(outcomes: list[str], wins=("better",)) -> tuple[str, str]:
    """The verdict from per-setting outcomes, and a one-line count."""
    known = [o for o in outcomes if o != "unknown"]
    if len(known) < MIN_SETTINGS:
        return NOT_ENOUGH, f"{len(known)} settings with >= {MIN_SEEDS} seeds per model (need {MIN_SETTINGS})"
    won = sum(o in wins for o in known)
    share = won / len(known)
    verdict = SUPPORTED if share >= 2 / 3 else NOT_SUPPORTED if share <= 1 / 3 else MIXED
    return verdict, f"{won} of {len(known)} settings"


def pairwise(runs: pd.DataFrame, model: str, rival: str, column: str = "score",
             higher: bool | None = None) -> list[dict]:
    """Per setting: both models' summaries and the outcome for `model` against `rival`."""
    summaries = summarise(runs, column)
    rows = []
    for setting in sorted({s for s, _ in summaries}, key=setting_order):
        a, b = summaries.get((setting, model)), summaries.get((setting, rival))
        if a is None or b is None:
            continue
        up = higher_is_better(runs, setting) if higher is None else higher
        outcome = compare(a, b, up) if min(a.n, b.n) >= MIN_SEEDS else "unknown"
        rows.append({"setting": setting, model: a, rival: b, "outcome": outcome})
    return rows


def setting_order(setting: str):
    """"adding T=30 H=64" sorts by data set, then length, then width, as numbers."""
    numbers = [int(part[2:]) for part in setting.split() if part[:2] in ("T=", "H=") and part[2:].isdigit()]
    return (setting.split()[0], *numbers)


def c1(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C1")
    rows = pairwise(runs, "lstm", "rnn") if not runs.empty else []
    verdict, count = share_rule([r["outcome"] for r in rows])
    return Verdict("C1", verdict, f"LSTM better than the RNN on {count}", rows)


def c2(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C2")
    rows = []
    for stage, column in (("init", "metrics.grad/decay_log10_init"), ("trained", "metrics.grad/decay_log10_trained")):
        if runs.empty or column not in runs:
            continue
        for row in pairwise(runs, "lstm", "rnn", column, higher=True):
            rows.append({**row, "setting": f"{row['setting']} ({stage})"})
    verdict, count = share_rule([r["outcome"] for r in rows])
    return Verdict("C2", verdict, "log10(‖dL/dh_1‖ / ‖dL/dh_T‖), higher is less vanishing: LSTM higher than "
                   f"the RNN on {count}", rows)


def cost_rows(runs: pd.DataFrame, model: str, rival: str) -> tuple[list[dict], float]:
    """Step-time comparisons (lower is better) and the ratio of recurrent parameters."""
    if runs.empty or "metrics.speed/step_ms" not in runs:
        return [], math.nan
    rows = pairwise(runs, model, rival, "metrics.speed/step_ms", higher=False)
    params = runs.groupby("tags.model")["metrics.params/recurrent"].median() \
        if "metrics.params/recurrent" in runs else pd.Series(dtype=float)
    ratio = params.get(model, math.nan) / params.get(rival, math.nan) if len(params) else math.nan
    return rows, ratio


def c3(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C3")
    rows, ratio = cost_rows(runs, "lstm", "rnn")
    # LSTM "wins" the claim where it is slower (worse on step time)
    verdict, count = share_rule([r["outcome"] for r in rows], wins=("worse",))
    if verdict != NOT_ENOUGH and not ratio > 1:
        verdict = NOT_SUPPORTED
    return Verdict("C3", verdict, f"LSTM/RNN recurrent parameters = {ratio:.2f}; LSTM training step (median ms) "
                   f"slower than the RNN's on {count}", rows)


def c4(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C4")
    forget_rows, outcomes = [], []
    summaries = summarise(runs) if not runs.empty else {}
    for setting in sorted({s for s, _ in summaries}, key=setting_order):
        ablations = {m: summaries.get((setting, m)) for m in ("lstm_nfg", "lstm_nig", "lstm_nog")}
        if any(s is None for s in ablations.values()):
            continue
        up = higher_is_better(runs, setting)
        known = all(s.n >= MIN_SEEDS for s in ablations.values())
        vs_input = compare(ablations["lstm_nfg"], ablations["lstm_nig"], up) if known else "unknown"
        vs_output = compare(ablations["lstm_nfg"], ablations["lstm_nog"], up) if known else "unknown"
        outcome = "unknown" if not known else "better" if vs_input == vs_output == "worse" else "tie"
        outcomes.append(outcome)
        forget_rows.append({"setting": setting, **ablations, "lstm": summaries.get((setting, "lstm"), Summary.of([])),
                            "janet": summaries.get((setting, "janet"), Summary.of([])),
                            "lstm_cifg": summaries.get((setting, "lstm_cifg"), Summary.of([])),
                            "outcome": "forget gate matters most" if outcome == "better" else outcome})
    forget_verdict, forget_count = share_rule(outcomes)
    janet_rows = pairwise(runs, "janet", "lstm") if not runs.empty else []
    janet_verdict, janet_count = share_rule([r["outcome"] for r in janet_rows])
    parts = {forget_verdict, janet_verdict}
    if NOT_ENOUGH in parts:
        verdict = NOT_ENOUGH
    elif parts == {SUPPORTED}:
        verdict = SUPPORTED
    elif parts == {NOT_SUPPORTED}:
        verdict = NOT_SUPPORTED
    else:
        verdict = MIXED
    evidence = (f"(a) without the forget gate the LSTM is worse than without the input or output gate on "
                f"{forget_count}: {forget_verdict}; (b) JANET better than the LSTM on {janet_count}: {janet_verdict}")
    return Verdict("C4", verdict, evidence, forget_rows + [{**r, "setting": f"{r['setting']}: janet vs lstm"}
                                                          for r in janet_rows])


def c5(frame: pd.DataFrame) -> Verdict:
    runs = claim_runs(frame, "C5")
    rows = pairwise(runs, "gru", "lstm") if not runs.empty else []
    as_well, count = share_rule([r["outcome"] for r in rows], wins=("better", "tie"))
    time_rows, ratio = cost_rows(runs, "gru", "lstm")
    faster, time_count = share_rule([r["outcome"] for r in time_rows], wins=("better", "tie"))
    parts = [as_well, faster, SUPPORTED if ratio < 1 else NOT_ENOUGH if math.isnan(ratio) else NOT_SUPPORTED]
    if NOT_ENOUGH in parts:
        verdict = NOT_ENOUGH
    elif all(p == SUPPORTED for p in parts):
        verdict = SUPPORTED
    elif all(p == NOT_SUPPORTED for p in parts):
        verdict = NOT_SUPPORTED
    else:
        verdict = MIXED
    evidence = (f"GRU not worse than the LSTM on {count} ({as_well}); GRU/LSTM recurrent parameters = {ratio:.2f}; "
                f"GRU training step no slower on {time_count} ({faster})")
    return Verdict("C5", verdict, evidence, rows + [{**r, "setting": f"{r['setting']} step ms"} for r in time_rows])


RULES = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5}


def all_verdicts(frame: pd.DataFrame) -> list[Verdict]:
    verdicts = [rule(frame) for rule in RULES.values()]
    verdicts += [Verdict(c, "see tests", CODE_EVIDENCE[c]) for c in ("C6", "C7")]
    return verdicts
