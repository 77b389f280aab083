"""The claims report on stores whose truth is known: paired seeds, equivalence margins, failed runs
counted, censored times to solve, one study per claim, and the written report."""

import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from grubench import levels
from grubench.harness.store import Store
from grubench.report.__main__ import main as report_main
from grubench.report.__main__ import to_html
from grubench.report.evidence import claim_runs, load_runs
from grubench.report.statistics import holm, paired, times_to_solve
from grubench.report.verdicts import (
    BETTER,
    INCONCLUSIVE,
    NOT_AFTER_HOLM,
    SUPPORTED,
    TIE,
    TOO_FEW_SEEDS,
    UNDERTRAINED,
    WORSE,
    Comparison,
    c1,
    c2,
    c3,
    c4,
    c5,
    decide,
    forget_gate_outcome,
)
from grubench.train import train
from tests.cli import command
from tests.conftest import compose_config

CHANCE = {"mse": 1 / 6, "acc": 0.125}
DECIDES = {"C1": "adding T=100;adding T=200;copy T=30;mnist1d", "C2": "adding T=100;copy T=30",
           "C4": "adding T=50;copy T=30", "C5": "adding T=50;mnist1d", "C3": "adding T=100"}


def record(store, claim, model, dataset, length, seed, score, metric="mse", study="small/c1", status="FINISHED",
           budget_steps=2000, **metrics):
    """Log one run the way a study's training run tags it, with chosen numbers."""
    run = store.create_run(None, {
        "claims": claim, "model": model, "dataset": dataset, "seed": str(seed), "task/metric": metric,
        "task/seq_len": str(length), "task/chance": str(CHANCE.get(metric, 0.1)), "study": study,
        f"decides/{claim}": DECIDES[claim], "grad/steps": "0,500"})
    run.log_params({"dataset/seq_len": length, "model/hidden_size": 64, "trainer/max_steps": budget_steps})
    run.log_metrics({"train/budget_steps": budget_steps})  # logged when training starts, a failed run has it too
    if status == "FINISHED":
        run.log_metrics({f"test/{metric}": score, **metrics})
    run.set_status(status)


@pytest.fixture
def fill(store):
    opened = Store.open(store, "claims")

    def add(claim, model, length, scores, dataset="adding", metric="mse", study="small/c1", failed=(), **metrics):
        for seed, score in enumerate(scores):
            record(opened, claim, model, dataset, length, seed, score, metric=metric, study=study,
                   status="FAILED" if seed in failed else "FINISHED", **{k: v[seed] for k, v in metrics.items()})

    return add


def solving(steps, budget=2000):
    """Metrics of runs that solved the adding task at `steps` (None: never solved, MSE at chance)."""
    return {"solve/solved": [0 if s is None else 1 for s in steps],
            "solve/step": [budget if s is None else s for s in steps]}


def test_paired_differences_give_the_interval_the_test_and_the_equivalence():
    clear = paired({i: 0.01 + 0.001 * i for i in range(5)}, {i: 0.15 + 0.002 * i for i in range(5)}, False, 0.01)
    assert clear.wins == 5 and clear.p_differ < 0.001 and clear.low > 0.01  # a lower MSE favours a
    assert clear.p_sign_flip == pytest.approx(2 / 32)  # 5 seeds: the exact test cannot go below 0.0625
    same = paired({i: 0.90 + 0.002 * (i % 3) for i in range(6)}, {i: 0.90 + 0.002 * (i % 2) for i in range(6)},
                  True, 0.02)
    assert same.p_differ > 0.05 and same.p_equivalent < 0.05  # within the 2-point margin
    assert paired({0: 0.1}, {0: 0.2}, False, 0.01) is None
    assert holm([0.01, 0.04, 0.03]) == [True, False, False] and holm([0.001, 0.02, 0.04]) == [True, True, True]


def test_times_to_solve_are_censored_at_the_budget():
    sooner = times_to_solve([(300, True)] * 6, [(2000, False)] * 6)
    assert sooner.sooner == "a" and sooner.p_differ < 0.01 and (sooner.solved_a, sooner.solved_b) == (6, 0)
    assert times_to_solve([(2000, False)] * 6, [(300, True)] * 3 + [(2000, False)] * 3).sooner == "b"
    assert times_to_solve([(2000, False)] * 3, [(2000, False)] * 3).p_differ == 1.0


def test_a_clear_effect_with_five_seeds_is_decided(store, fill):
    fill("C1", "lstm", 100, [0.001, 0.002, 0.0015, 0.001, 0.002], **solving([300, 400, 350, 320, 380]))
    fill("C1", "rnn", 100, [0.16, 0.17, 0.165, 0.16, 0.168], **solving([None] * 5))
    fill("C1", "lstm", 30, [0.60, 0.62, 0.58, 0.61, 0.63], dataset="copy", metric="acc", **solving([None] * 5))
    fill("C1", "rnn", 30, [0.13, 0.12, 0.125, 0.13, 0.12], dataset="copy", metric="acc", **solving([None] * 5))
    verdict = c1(load_runs(store))
    assert verdict.verdict == SUPPORTED, verdict.evidence
    assert [r["outcome"] for r in verdict.rows if r["deciding"]] == [BETTER, BETTER]
    assert "lstm solved 5/5 vs rnn 0/5, median step" in verdict.rows[0]["effect"] and "vs never" in verdict.rows[0]["effect"]
    assert "lstm ahead of rnn by +0.483 [" in verdict.rows[1]["effect"] and "lstm better in 5/5 seeds" in verdict.rows[1]["effect"]
    assert verdict.rows[0]["said"] == "LSTM better"
    # the summary table's line per deciding setting: the outcome in the claim's words, the effect
    assert verdict.deciding[0].startswith("adding T=100: **LSTM better**: lstm solved 5/5 vs rnn 0/5")
    assert verdict.deciding[1].startswith("copy T=30: **LSTM better**: lstm ahead of rnn by +0.483 [")


def test_two_noisy_seeds_are_inconclusive_not_a_tie(store, fill):
    fill("C1", "lstm", 30, [0.40, 0.20], dataset="copy", metric="acc")
    fill("C1", "rnn", 30, [0.30, 0.35], dataset="copy", metric="acc")
    fill("C1", "lstm", 100, [0.06, 0.10])
    fill("C1", "rnn", 100, [0.09, 0.05])
    verdict = c1(load_runs(store))
    assert [r["outcome"] for r in verdict.rows] == [TOO_FEW_SEEDS, TOO_FEW_SEEDS]
    assert verdict.verdict == INCONCLUSIVE and "2 too few seeds" in verdict.evidence


def test_two_models_drawn_from_one_distribution_are_never_better(store, fill):
    generator = np.random.default_rng(0)
    for trial in range(20):
        a, b = (list(0.9 + 0.005 * generator.standard_normal(6))
                for _ in range(2))
        scores = paired(dict(enumerate(a)), dict(enumerate(b)), True, levels.EQUIVALENT["acc"])
        assert scores.p_equivalent < 0.05, trial  # the same within 2 points, shown by TOST
    fill("C5", "gru", 0, list(0.9 + 0.005 * generator.standard_normal(6)), dataset="mnist1d", metric="acc")
    fill("C5", "lstm", 0, list(0.9 + 0.005 * generator.standard_normal(6)), dataset="mnist1d", metric="acc")
    (row,) = c5(load_runs(store)).rows
    assert row["outcome"] == TIE and row["said"] == "GRU as good"


def test_failed_runs_count_against_the_model_that_failed(store, fill):
    # the LSTM solved in 6 of 6 seeds; the RNN failed in 3 (a diverged loss) and stayed at chance in 3
    fill("C1", "lstm", 100, [0.001] * 6, **solving([300, 350, 400, 320, 380, 360]))
    fill("C1", "rnn", 100, [0, 0, 0, 0.02, 0.03, 0.025], failed=(0, 1, 2), **solving([None] * 6))
    runs = claim_runs(load_runs(store), "C1")
    rnn = runs[runs["model"] == "rnn"]
    assert len(rnn) == 6 and rnn["failed"].sum() == 3 and not rnn["learned"][rnn["failed"]].any()
    assert rnn.loc[rnn["failed"], "score"].tolist() == pytest.approx([1 / 6] * 3)  # a failed run scores chance
    (row,) = c1(load_runs(store)).rows
    assert row["outcome"] == BETTER and "3 failed" in row["rnn"] and "solved 0/6" in row["rnn"]


def test_missing_seeds_are_named(store, fill):
    fill("C1", "lstm", 100, [0.001] * 4, **solving([300] * 4))
    fill("C1", "rnn", 100, [0.16] * 3, **solving([None] * 3))
    (row,) = c1(load_runs(store)).rows
    assert "seeds missing: 3" in row["rnn"] and "seeds missing" not in row["lstm"]


def test_settings_the_preset_did_not_name_decide_nothing(store, fill):
    fill("C1", "lstm", 50, [0.001] * 5, **solving([300] * 5))
    fill("C1", "rnn", 50, [0.16] * 5, **solving([None] * 5))  # adding T=50: not in the preset's list
    verdict = c1(load_runs(store))
    assert [r["deciding"] for r in verdict.rows] == [False] and verdict.verdict == INCONCLUSIVE


def test_one_kind_of_task_cannot_decide_a_claim(store, fill):
    for length in (100, 200):
        fill("C1", "lstm", length, [0.001] * 5, **solving([300] * 5))
        fill("C1", "rnn", length, [0.16] * 5, **solving([None] * 5))
    verdict = c1(load_runs(store))
    assert verdict.verdict == INCONCLUSIVE and "from 1 kind(s) of task" in verdict.evidence


def test_a_real_data_set_short_of_its_known_level_decides_nothing(store, fill):
    fill("C1", "lstm", 0, [0.42, 0.44, 0.41, 0.43, 0.42], dataset="mnist1d", metric="acc")
    fill("C1", "rnn", 0, [0.24, 0.25, 0.23, 0.24, 0.26], dataset="mnist1d", metric="acc")
    (row,) = c1(load_runs(store)).rows
    assert row["outcome"].startswith("inconclusive (short of the known level") and "below" in row["outcome"]


def test_an_exploding_gradient_never_counts_as_vanishing_less(store, fill):
    init, trained = "grad/x_slope_step0", "grad/x_slope_step500"  # gradient_flow=[0,500]
    fill("C2", "lstm", 100, [0.001] * 5, **{init: [-0.003] * 5, trained: [-0.002, -0.003, -0.002, -0.001, -0.002]})
    fill("C2", "rnn", 100, [0.16] * 5, **{init: [0.05, 0.06, 0.05, 0.04, 0.05], trained: [-0.2, -0.21, -0.19, -0.2, -0.2]})
    rows = [r for r in c2(load_runs(store)).rows if r["deciding"]]
    assert rows[0]["outcome"] == "inconclusive (rnn explodes)"  # the RNN explodes at initialisation
    assert rows[1]["outcome"] == BETTER  # after training the RNN vanishes fast, the LSTM hardly
    fill("C2", "lstm", 30, [0.1] * 5, dataset="copy", metric="acc", **{init: [0.04] * 5, trained: [0.03] * 5})
    fill("C2", "rnn", 30, [0.13] * 5, dataset="copy", metric="acc", **{init: [-0.1] * 5, trained: [-0.1] * 5})
    copy = [r for r in c2(load_runs(store)).rows if r["setting"].startswith("copy") and r["deciding"]]
    assert all(r["outcome"] in ("inconclusive (lstm explodes)", UNDERTRAINED) for r in copy)


def test_c3_and_c5_decide_cost_by_exact_counts_and_show_time_beside(store, fill):
    for claim, model, params, flops, ms in (("C3", "lstm", 16896, 33792, [40, 42, 41]), ("C3", "rnn", 4224, 8448, [20, 21, 22]),
                                            ("C5", "gru", 12672, 25344, [45, 46, 44]), ("C5", "lstm", 16896, 33792, [30, 31, 29])):
        fill(claim, model, 100 if claim == "C3" else 50, [0.01] * 3, **{"params/recurrent": [params] * 3,
             "flops/step": [flops] * 3, "speed/step_ms": ms})
    # a second task with another input size, and more seeds of one model there: the ratio is taken
    # within each setting, never between one model's adding runs and the other's copy runs
    for model, params, seeds in (("gru", 14592, 1), ("lstm", 19456, 3)):
        fill("C5", model, 30, [0.5] * seeds, dataset="copy", metric="acc",
             **{"params/recurrent": [params] * seeds, "flops/step": [2 * params] * seeds})
    c3_verdict, c5_verdict = c3(load_runs(store)), c5(load_runs(store))
    assert c3_verdict.verdict == SUPPORTED and "recurrent parameters 4.00, multiply-adds per step 4.00" in c3_verdict.evidence
    assert [r["deciding"] for r in c3_verdict.rows] == [False]  # the step time is shown, it decides nothing
    assert "GRU/LSTM recurrent parameters 0.75" in c5_verdict.evidence and "cheaper" in c5_verdict.evidence
    assert any(r["setting"].endswith("step ms") and r["outcome"] == WORSE for r in c5_verdict.rows)


def test_c4_b_reads_the_lstm_of_the_same_implementation_and_initialisation(store, fill):
    for length, dataset, metric, good, bad in ((50, "adding", "mse", 0.001, 0.16), (30, "copy", "acc", 0.9, 0.13)):
        fill("C4", "janet", length, [good] * 5, dataset=dataset, metric=metric)
        fill("C4", "lstm_eq_chrono", length, [bad + (0.01 if metric == "acc" else 0.0)] * 5, dataset=dataset,
             metric=metric)
        fill("C4", "lstm", length, [good] * 5, dataset=dataset, metric=metric)  # torch's LSTM: context only
    verdict = c4(load_runs(store))
    janet = [r for r in verdict.rows if "(b)" in r["setting"]]
    assert [r["outcome"] for r in janet] == [BETTER, BETTER] and all(r["deciding"] for r in janet)
    assert [r["deciding"] for r in verdict.rows if "torch's LSTM" in r["setting"]] == [False, False]
    assert "(b) supported: JANET better than the LSTM of the same implementation and initialisation on 2 of 2" in verdict.evidence


def test_the_forget_gate_loses_a_setting_as_soon_as_another_gate_matters_as_much():
    assert forget_gate_outcome(WORSE, WORSE) == BETTER
    assert forget_gate_outcome(BETTER, WORSE) == WORSE
    assert forget_gate_outcome(TIE, WORSE) == TIE
    assert forget_gate_outcome(TOO_FEW_SEEDS, WORSE) == TOO_FEW_SEEDS


def test_each_claim_reads_one_scale(store, fill):
    fill("C1", "lstm", 100, [0.001] * 5, study="small/c1", **solving([300] * 5))
    fill("C1", "rnn", 100, [0.16] * 5, study="small/c1", **solving([None] * 5))
    fill("C1", "lstm", 100, [0.16] * 5, study="full/c1", **solving([None] * 5))  # newer, another scale
    fill("C1", "rnn", 100, [0.001] * 5, study="full/c1", **solving([300] * 5))
    runs = claim_runs(load_runs(store), "C1")
    assert set(runs["study"]) == {"full/c1"} and len(runs) == 10
def test_html_has_the_tables_embeds_the_figures_and_colours_the_verdicts(tmp_path):
    (tmp_path / "c1.png").write_bytes(b"\x89PNG fake")
    page = to_html("# r\n\n| claim | verdict |\n|---|---|\n| C1 | **mixed** |\n| C2 | a<br>b |\n\n"
                   "mse < 0.01 & <em>x</em> `a<b>`\n\n![C1](c1.png)\n", tmp_path)
    assert "<th>claim</th>" in page and "<td>C1</td>" in page
    assert "<td>a<br>b</td>" in page  # a line in a cell: the one tag the report writes
    assert '<strong style="color:#bc4c00">mixed</strong>' in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page  # base64 of the file's bytes
    assert "mse &lt; 0.01 &amp; &lt;em&gt;x&lt;/em&gt; <code>a&lt;b&gt;</code>" in page  # text stays text


def test_report_without_a_store_is_refused(tmp_path):
    from grubench.errors import GrubenchError

    with pytest.raises(GrubenchError, match="no MLflow store"):
        report_main([f"tracking.uri={tmp_path / 'none.db'}", "--out", str(tmp_path / "r")])


def test_first_solved_absolute_and_relative_levels():
    assert levels.first_solved([(100, 0.16), (200, 0.009), (300, 0.002)], "adding", "mse") == 200
    assert levels.first_solved([(100, 0.16), (200, 0.05)], "adding", "mse") is None
    assert levels.first_solved([(100, 0.5), (200, 0.90), (300, 0.905)], "mnist1d", "acc") == 200
    assert levels.first_solved([(100, 0.5), (200, 0.88), (300, 0.905)], "mnist1d", "acc") == 300


def test_a_run_that_never_beat_chance_solved_nothing():
    flat = [(100, 0.10), (200, 0.11), (300, 0.10)]  # MNIST-1D accuracy at chance (0.1) throughout
    assert levels.first_solved(flat, "mnist1d", "acc", chance=0.1) is None
    assert levels.first_solved(flat, "mnist1d", "acc") == 100  # chance unknown: relative to its best


def test_solve_step_on_real_tiny_runs(store):
    common = ["trainer=debug", "trainer.max_epochs=3", "+model=gru", "model.hidden_size=8", "dataset.limit=64",
              f"tracking.uri={store}", "tracking.experiment=solve", "tracking.log_checkpoint=false"]
    train(compose_config(["dataset=digits", *common]))
    train(compose_config(["dataset.seq_len=5", *common]))
    runs = load_runs(store).set_index("tags.dataset")
    digits, adding = runs.loc["digits"], runs.loc["adding"]
    assert digits["metrics.train/steps"] == 3 and adding["metrics.train/steps"] == 3  # 3 epochs of 1 batch
    # digits has no absolute level: solved within 1 point of the run's best validation accuracy
    # (if that beat chance by the margin), first reached at one of its three validations
    # (Lightning logs an epoch's validation metrics at the step before the epoch's last: 0, 1, 2)
    history = [(m.step + 1, m.value) for m in MlflowClient(store).get_metric_history(digits["run_id"], "val/acc")]
    assert [step for step, _ in history] == [1, 2, 3]
    expected = levels.first_solved(history, "digits", "acc", chance=0.1)
    assert digits["metrics.solve/solved"] == (expected is not None)
    step = digits.get("metrics.solve/step", math.nan)
    assert math.isnan(step) if expected is None else step == expected
    # 3 steps of a width-8 GRU cannot bring the adding task's MSE to 0.01: recorded as never solved
    assert adding["metrics.solve/solved"] == 0
    assert math.isnan(adding.get("metrics.solve/step", math.nan))


def test_report_from_real_tiny_runs(tmp_path, store):
    for model in ("rnn", "lstm"):
        for length in (4, 8):
            for seed in (0, 1):
                train(compose_config([f"+model={model}", "trainer=debug", "dataset.limit=64", "model.hidden_size=8",
                                      f"dataset.seq_len={length}", f"seed={seed}", f"tracking.uri={store}",
                                      "claims=[C1]", "+decides.C1=['adding T=4','adding T=8']",
                                      "tracking.experiment=c1"]))
    runs = claim_runs(load_runs(store), "C1")
    assert len(runs) == 8
    lstm_4 = runs[(runs["tags.model"] == "lstm") & (runs["length"] == 4)]["score"]
    verdict = c1(load_runs(store))
    row = next(r for r in verdict.rows if r["setting"] == "adding T=4")
    assert row["lstm"].startswith(f"{lstm_4.mean():.4g} ± ") and "(n=2)" in row["lstm"]
    assert verdict.verdict == INCONCLUSIVE  # one debug epoch: no model beats chance, nothing is decided
    assert "undertrained" in verdict.evidence

    out = tmp_path / "report"
    done = command("grubench.report", [f"tracking.uri={store}", "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("C1  inconclusive") and done.stdout.splitlines()[-1].endswith("report.html")
    text = (out / "report.md").read_text()
    assert "| C1 |" in text and "inconclusive" in text  # C2..C5 have no runs here
    assert "nan" not in text.lower()
    assert (out / "c1_curves.png").stat().st_size > 10_000
    assert (out / "c1_score_vs_length.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (out / "report.html").read_text()
    (report_run,) = [r for r in MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("report").experiment_id])]
    assert report_run.data.tags["verdict/C1"] == verdict.verdict
    names = {a.path for a in MlflowClient(store).list_artifacts(report_run.info.run_id)}
    assert {"report.md", "report.html", "c1_score_vs_length.png"} <= names


def test_report_on_a_store_with_unrelated_runs(tmp_path, store, fill):
    other = Store.open(store, "other")
    other.client.set_terminated(other.client.create_run(other.experiment_id).info.run_id, "FINISHED")  # no tags
    plain = other.create_run(None, {"model": "gru", "claims": ""})  # a training run for no claim
    plain.log_metrics({"test/mse": 0.1})
    plain.set_status("FINISHED")
    other.create_run(None, {"sweep": "parent", "claims": "C1", "model": "gru"}).set_status("FINISHED")
    out = tmp_path / "report"
    assert report_main([f"tracking.uri={store}", "--out", str(out), "--no-log"]) == 0
    text = (out / "report.md").read_text()
    assert "from 1 training runs (finished or failed)" in text and "1 of them bear on no claim and are skipped" in text
    assert "nan" not in text.lower()
    fill("C5", "gru", 50, [0.01, 0.02, 0.015])  # C5 with scores but no cost metrics
    fill("C5", "lstm", 50, [0.01, 0.02, 0.015])
    assert report_main([f"tracking.uri={store}", "--out", str(out), "--no-log"]) == 0
    text = (out / "report.md").read_text()
    assert "GRU/LSTM counts not recorded" in text and "nan" not in text.lower()


def test_measured_times_beside_the_counts_come_from_kernels_of_the_same_kind(store, fill):
    bench = Store.open(store, "bench")
    for model, ms in (("gru", [30, 32, 31]), ("lstm", [20, 21, 22]), ("gru_doc", [50, 52, 51]), ("lstm_eq", [60, 62, 61])):
        for round_, value in enumerate(ms):  # three rounds, the report takes their median
            cell = bench.create_run(f"{model}-r{round_}", {"bench/role": "cell", "bench/status": "ok", "model": model})
            cell.log_params({"device": "cpu", "precision": "32-true", "batch": 64, "seq_len": 100, "hidden": 256,
                             "round": round_})
            cell.log_metrics({"time/train_ms": value})
            cell.set_status("FINISHED")
    fill("C5", "gru", 50, [0.01] * 3)
    fill("C5", "lstm", 50, [0.01] * 3)
    lines = c5(load_runs(store)).extra
    assert any(line.startswith("Measured step time gru/lstm (cpu, batch 64, length 100, median of 3 round(s)") and
               "H 256: 1.48" in line for line in lines), lines
    assert any("gru_doc/lstm_eq" in line and "H 256: 0.84" in line for line in lines), lines


def test_an_effect_significant_alone_but_not_over_the_claims_settings_says_so():
    def comparison(p):
        return Comparison("C1", "adding T=100", "adding", "lstm", "rnn", True, {}, "paired t", "", p=p, direction=1)

    clear, alone, weak = comparison(0.001), comparison(0.04), comparison(0.3)
    decide([clear, alone, weak])   # Holm: 0.001 <= 0.05 / 3; 0.04 > 0.05 / 2
    assert [clear.outcome, alone.outcome, weak.outcome] == [BETTER, NOT_AFTER_HOLM, TOO_FEW_SEEDS]
