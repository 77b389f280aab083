"""The claims report: aggregation over seeds, each verdict rule, and the written report."""

import math
import warnings

import pytest
from mlflow.tracking import MlflowClient

from grubench import levels
from grubench.harness.store import Store
from grubench.report.__main__ import main as report_main
from grubench.report.__main__ import to_html
from grubench.report.evidence import Summary, claim_runs, compare, load_runs
from grubench.report.verdicts import (
    AT_CEILING,
    BETTER,
    INCONCLUSIVE,
    MIXED,
    NOT_SUPPORTED,
    SUPPORTED,
    TIE,
    TOO_FEW_SEEDS,
    UNDERTRAINED,
    WORSE,
    c1,
    c2,
    c3,
    c4,
    c5,
    forget_gate_outcome,
    judge,
)
from grubench.train import train
from tests.cli import command
from tests.conftest import compose_config

CHANCE = {"mse": 1 / 6, "acc": 0.125}


def record(store, claim, model, dataset, length, seed, score, metric="mse", mode="min", width=64, study="",
           epochs=12, **metrics):
    """Log one finished run the way a training run tags it, with chosen numbers."""
    run = store.create_run(None, {
        "claims": claim, "model": model, "dataset": dataset, "seed": str(seed), "task/metric": metric,
        "task/metric_mode": mode, "task/seq_len": str(length), "task/chance": str(CHANCE[metric]), "study": study})
    run.log_params({"dataset/seq_len": length, "model/hidden_size": width, "trainer/max_epochs": epochs})
    run.log_metrics({f"test/{metric}": score, **metrics})
    run.set_status("FINISHED")


@pytest.fixture
def fill(store):
    opened = Store.open(store, "claims")

    def add(claim, model, length, scores, dataset="adding", width=64, metric="mse", study="", epochs=12, **metrics):
        for seed, score in enumerate(scores):
            record(opened, claim, model, dataset, length, seed, score, width=width, study=study,
                   epochs=epochs, metric=metric, mode="max" if metric == "acc" else "min",
                   **{k: v[seed] for k, v in metrics.items()})

    return add


def test_summary_is_mean_and_student_t_interval():
    s = Summary.of([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.n == 3
    assert s.half_width == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)  # t_{0.975,2} * sd/sqrt(n)
    assert math.isnan(Summary.of([5.0]).half_width)


def test_compare_needs_the_interval_of_the_difference_to_exclude_zero():
    low, high = Summary.of([0.10, 0.11, 0.12]), Summary.of([0.50, 0.52, 0.49])
    assert compare(low, high, higher_is_better=False) == "better"
    assert compare(low, high, higher_is_better=True) == "worse"
    assert compare(Summary.of([0.1, 0.5, 0.3]), Summary.of([0.2, 0.4, 0.3]), False) == "tie"
    assert compare(Summary.of([0.1]), high, False) == "unknown"
    # constant values (zero variance): any difference counts, and scipy's warning on them is not shown
    assert Summary.of([0.1, 0.1, 0.1]).half_width == 0
    assert compare(Summary.of([0.1, 0.1, 0.1]), Summary.of([0.2, 0.2]), False) == "better"
    assert compare(Summary.of([0.1, 0.1, 0.1]), Summary.of([0.1, 0.1]), False) == "tie"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compare(Summary.of([0.1, 0.1, 0.1]), high, False) == "better"


def test_c1_supported_mixed_and_inconclusive(store, fill):
    assert c1(load_runs(store)).verdict == INCONCLUSIVE
    fill("C1", "lstm", 20, [0.01, 0.02, 0.015])
    fill("C1", "rnn", 20, [0.15, 0.16, 0.17])
    assert c1(load_runs(store)).verdict == INCONCLUSIVE  # one decisive setting is not enough
    fill("C1", "lstm", 50, [0.02, 0.03, 0.025])
    fill("C1", "rnn", 50, [0.16, 0.17, 0.165])
    assert c1(load_runs(store)).verdict == SUPPORTED
    fill("C1", "lstm", 100, [0.12, 0.13, 0.125])
    fill("C1", "rnn", 100, [0.01, 0.012, 0.011])
    fill("C1", "lstm", 200, [0.16, 0.17, 0.18])  # neither model learned: counts for nothing
    fill("C1", "rnn", 200, [0.16, 0.18, 0.17])
    fill("C1", "lstm", 300, [0.08, 0.09, 0.10])
    fill("C1", "rnn", 300, [0.01, 0.012, 0.011])
    verdict = c1(load_runs(store))
    assert verdict.verdict == MIXED  # better on 2 of 4 decisive settings
    assert "2 of 4 decisive settings (1 undertrained inconclusive)" in verdict.evidence
    assert not any(d.startswith("adding T=200") for d in verdict.decisive) and len(verdict.decisive) == 4
    assert [r["outcome"] for r in verdict.rows] == [BETTER, BETTER, WORSE, UNDERTRAINED, WORSE]


def test_c1_not_supported_when_the_rnn_is_as_good(store, fill):
    for length in (20, 50, 100):
        fill("C1", "lstm", length, [0.10, 0.12, 0.11])
        fill("C1", "rnn", length, [0.11, 0.10, 0.12])
    assert c1(load_runs(store)).verdict == NOT_SUPPORTED


def test_a_seed_rerun_counts_once_and_single_seeds_are_not_enough(store, fill):
    fill("C1", "lstm", 20, [0.01])
    fill("C1", "rnn", 20, [0.2])
    fill("C1", "lstm", 50, [0.01])
    fill("C1", "rnn", 50, [0.2])
    runs = claim_runs(load_runs(store), "C1")
    assert len(runs) == 4
    verdict = c1(load_runs(store))
    assert verdict.verdict == INCONCLUSIVE and "2 too few seeds" in verdict.evidence
    fill("C1", "lstm", 20, [0.02])  # seed 0 again: replaces the first
    assert len(claim_runs(load_runs(store), "C1")) == 4


def test_c2_reads_gradient_decay_at_both_stages(store, fill):
    fill("C2", "lstm", 50, [0, 0, 0], **{"grad/decay_log10_init": [-1.0, -1.1, -0.9], "grad/decay_log10_trained": [-0.5, -0.6, -0.4]})
    fill("C2", "rnn", 50, [0, 0, 0], **{"grad/decay_log10_init": [-8.0, -7.5, -8.2], "grad/decay_log10_trained": [-6.0, -5.5, -6.1]})
    # at length 200 neither model learned: the gradients after training say nothing, at initialisation they do
    fill("C2", "lstm", 200, [0.167, 0.168, 0.166], **{"grad/decay_log10_init": [-2.0, -2.1, -1.9],
                                                      "grad/decay_log10_trained": [-1.0, -1.1, -0.9]})
    fill("C2", "rnn", 200, [0.166, 0.169, 0.167], **{"grad/decay_log10_init": [-9.0, -9.5, -9.2],
                                                     "grad/decay_log10_trained": [-9.0, -9.5, -9.2]})
    verdict = c2(load_runs(store))
    assert verdict.verdict == SUPPORTED
    assert "3 of 3 decisive settings (1 undertrained inconclusive)" in verdict.evidence
    assert "adding T=200 (trained): inconclusive (undertrained)" in [f"{r['setting']}: {r['outcome']}" for r in verdict.rows]


def test_c3_and_c5_use_parameters_and_step_time(store, fill):
    for length in (50, 100):
        fill("C3", "lstm", length, [0.1, 0.1, 0.1], **{"speed/step_ms": [20, 21, 22], "params/recurrent": [4] * 3})
        fill("C3", "rnn", length, [0.1, 0.1, 0.1], **{"speed/step_ms": [5, 6, 5.5], "params/recurrent": [1] * 3})
        fill("C5", "gru", length, [0.10, 0.11, 0.12], **{"speed/step_ms": [15, 16, 15.5], "params/recurrent": [3] * 3})
        fill("C5", "lstm", length, [0.11, 0.10, 0.12], **{"speed/step_ms": [20, 21, 22], "params/recurrent": [4] * 3})
    runs = load_runs(store)
    assert c3(runs).verdict == SUPPORTED
    assert "= 4.00" in c3(runs).evidence
    assert c5(runs).verdict == SUPPORTED
    assert "= 0.75" in c5(runs).evidence


def test_widths_of_one_study_are_settings_of_their_own(store, fill):
    for width in (64, 256):
        fill("C3", "lstm", 100, [0.1] * 3, width=width, **{"speed/step_ms": [20, 21, 22], "params/recurrent": [4] * 3})
        fill("C3", "rnn", 100, [0.1] * 3, width=width, **{"speed/step_ms": [5, 6, 5.5], "params/recurrent": [1] * 3})
    verdict = c3(load_runs(store))
    assert [r["setting"] for r in verdict.rows] == ["adding T=100 H=64", "adding T=100 H=256"]
    assert all("(n=3)" in r["lstm"] for r in verdict.rows)


def test_c4_needs_both_the_forget_gate_and_janet(store, fill):
    for length in (50, 100):
        fill("C4", "lstm", length, [0.02, 0.03, 0.025])
        fill("C4", "lstm_nfg", length, [0.16, 0.17, 0.165])
        fill("C4", "lstm_nig", length, [0.03, 0.04, 0.035])
        fill("C4", "lstm_nog", length, [0.03, 0.02, 0.025])
        fill("C4", "janet", length, [0.02, 0.025, 0.03])
        fill("C4", "lstm_fb1", length, [0.01, 0.02, 0.015])  # another model in the study: shown, decides nothing
    verdict = c4(load_runs(store))
    assert verdict.verdict == MIXED  # (a) supported, (b) JANET ties: not supported
    assert all("lstm_fb1" in row for row in verdict.rows)
    assert "(a)" in verdict.evidence and "supported" in verdict.evidence


def test_the_forget_gate_loses_a_setting_as_soon_as_another_gate_matters_as_much():
    assert forget_gate_outcome(WORSE, WORSE) == BETTER
    assert forget_gate_outcome(BETTER, WORSE) == WORSE  # without the input gate it did worse still
    assert forget_gate_outcome(UNDERTRAINED, BETTER) == WORSE  # decided by one comparison alone
    assert forget_gate_outcome(TIE, AT_CEILING) == TIE
    assert forget_gate_outcome(WORSE, AT_CEILING) == AT_CEILING
    assert forget_gate_outcome(UNDERTRAINED, TOO_FEW_SEEDS) == UNDERTRAINED


def test_report_from_real_tiny_runs(tmp_path, store):
    for model in ("rnn", "lstm"):
        for length in (4, 8):
            for seed in (0, 1):
                train(compose_config([f"+model={model}", "trainer=debug", "dataset.limit=64", "model.hidden_size=8",
                                      f"dataset.seq_len={length}", f"seed={seed}", f"tracking.uri={store}",
                                      "claims=[C1]", "tracking.experiment=c1"]))
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


def test_html_has_the_tables_embeds_the_figures_and_colours_the_verdicts(tmp_path):
    (tmp_path / "c1.png").write_bytes(b"\x89PNG fake")
    page = to_html("# r\n\n| claim | verdict |\n|---|---|\n| C1 | **mixed** |\n\nmse < 0.01 & <em>x</em> `a<b>`\n\n![C1](c1.png)\n",
                   tmp_path)
    assert "<th>claim</th>" in page and "<td>C1</td>" in page
    assert '<strong style="color:#bc4c00">mixed</strong>' in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page  # base64 of the file's bytes
    assert "mse &lt; 0.01 &amp; &lt;em&gt;x&lt;/em&gt; <code>a&lt;b&gt;</code>" in page  # text stays text


def test_report_without_a_store_is_refused(tmp_path):
    from grubench.errors import GrubenchError

    with pytest.raises(GrubenchError, match="no MLflow store"):
        report_main([f"tracking.uri={tmp_path / 'none.db'}", "--out", str(tmp_path / "r")])


@pytest.mark.parametrize("a, b, steps_a, steps_b, expected", [
    ([0.01, 0.02, 0.015], [0.15, 0.16, 0.17], None, None, BETTER),              # only a learned, clearly
    ([0.15, 0.16, 0.17], [0.01, 0.02, 0.015], None, None, WORSE),
    ([0.05, 0.06, 0.055], [0.06, 0.05, 0.055], None, None, TIE),                # both learned, the same
    ([0.166, 0.168, 0.17], [0.165, 0.167, 0.16], None, None, UNDERTRAINED),     # both at chance
    ([0.004, 0.005, 0.006], [0.005, 0.004, 0.006], [700, 710, 690], [705, 690, 700], AT_CEILING),
    ([0.004, 0.005, 0.006], [0.005, 0.004, 0.006], [300, 310, 290], [900, 1000, 950], BETTER),  # faster there
    ([0.004, 0.005, 0.006], [0.005, 0.004, 0.006], [900, 1000, 950], [300, 310, 290], WORSE),
    ([0.01], [0.16, 0.17], None, None, TOO_FEW_SEEDS),                          # one seed
    ([0.01, 0.16, 0.17], [0.16, 0.17, 0.165], None, None, TOO_FEW_SEEDS),       # learned in one seed of three
])
def test_every_outcome_on_the_adding_task(a, b, steps_a, steps_b, expected):
    steps = [Summary.of(s) if s else None for s in (steps_a, steps_b)]
    assert judge(Summary.of(a), Summary.of(b), False, "adding", "mse", 1 / 6, *steps) == expected


def test_outcomes_on_accuracy_use_the_margin_and_the_ceiling():
    chance, rival = 0.125, Summary.of([0.13, 0.12, 0.125])
    assert judge(Summary.of([0.15, 0.16, 0.14]), rival, True, "copy", "acc", chance) == UNDERTRAINED
    assert judge(Summary.of([0.40, 0.42, 0.41]), rival, True, "copy", "acc", chance) == BETTER
    top, steps = Summary.of([0.995, 0.999, 1.0]), Summary.of([500, 600, 550])
    assert judge(top, top, True, "copy", "acc", chance, steps, steps) == AT_CEILING
    # real data sets have no ceiling: two high scores are compared as scores
    assert judge(top, Summary.of([0.90, 0.91, 0.905]), True, "mnist1d", "acc", 0.1) == BETTER


def test_first_solved_absolute_and_relative_levels():
    assert levels.first_solved([(100, 0.16), (200, 0.009), (300, 0.002)], "adding", "mse") == 200
    assert levels.first_solved([(100, 0.16), (200, 0.05)], "adding", "mse") is None
    assert levels.first_solved([(100, 0.5), (200, 0.90), (300, 0.905)], "mnist1d", "acc") == 200
    assert levels.first_solved([(100, 0.5), (200, 0.88), (300, 0.905)], "mnist1d", "acc") == 300


def test_a_claim_with_too_few_decisive_settings_is_inconclusive_and_says_why(store, fill):
    for length in (100, 200):
        fill("C1", "lstm", length, [0.167, 0.168, 0.166])
        fill("C1", "rnn", length, [0.166, 0.169, 0.167])
    fill("C1", "lstm", 10, [0.004, 0.005, 0.006], **{"solve/step": [400, 420, 410], "solve/solved": [1, 1, 1]})
    fill("C1", "rnn", 10, [0.005, 0.004, 0.006], **{"solve/step": [410, 400, 420], "solve/solved": [1, 1, 1]})
    verdict = c1(load_runs(store))
    assert verdict.verdict == INCONCLUSIVE
    assert "2 undertrained" in verdict.evidence and "1 at ceiling" in verdict.evidence
    assert verdict.decisive == []
    assert "no model beat chance" in verdict.literature
    assert "solved 3/3 by step 410" in verdict.rows[0]["lstm"]


def test_runs_of_another_budget_or_no_preset_never_stand_in_for_a_study(store, fill):
    for length in (10, 30):
        fill("C1", "lstm", length, [0.01, 0.02, 0.015], study="small/c1_lengths", epochs=25)
        fill("C1", "rnn", length, [0.15, 0.16, 0.17], study="small/c1_lengths", epochs=25)
    # later, a quick sweep of the same settings, models and seeds without the preset
    for length in (10, 30):
        fill("C1", "lstm", length, [0.87, 0.80], epochs=1)
        fill("C1", "rnn", length, [0.69, 0.70], epochs=1)
    runs = claim_runs(load_runs(store), "C1")
    assert set(runs["study"]) == {"small/c1_lengths"} and len(runs) == 12
    verdict = c1(load_runs(store))
    assert verdict.verdict == SUPPORTED
    assert verdict.studies == ["small/c1_lengths [epochs=25 H=64]"]


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
    assert "from 1 finished training runs" in text and "1 of them bear on no claim and are skipped" in text
    assert "nan" not in text.lower()
    fill("C5", "gru", 50, [0.01, 0.02, 0.015])  # C5 with scores but no cost metrics
    fill("C5", "lstm", 50, [0.01, 0.02, 0.015])
    assert report_main([f"tracking.uri={store}", "--out", str(out), "--no-log"]) == 0
    text = (out / "report.md").read_text()
    assert "parameters = not recorded" in text and "nan" not in text.lower()


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


def test_a_run_that_never_beat_chance_solved_nothing():
    flat = [(100, 0.10), (200, 0.11), (300, 0.10)]  # MNIST-1D accuracy at chance (0.1) throughout
    assert levels.first_solved(flat, "mnist1d", "acc", chance=0.1) is None
    assert levels.first_solved(flat, "mnist1d", "acc") == 100  # chance unknown: relative to its best
