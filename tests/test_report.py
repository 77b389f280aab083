"""The claims report: aggregation over seeds, each verdict rule, and the written report."""

import math

import pytest
from mlflow.tracking import MlflowClient

from grubench.harness import tracking
from grubench.report.__main__ import main as report_main
from grubench.report.evidence import Summary, claim_runs, compare, load_runs
from grubench.report.verdicts import MIXED, NOT_ENOUGH, NOT_SUPPORTED, SUPPORTED, c1, c2, c3, c4, c5
from grubench.train import train
from tests.conftest import compose_config


def record(store, claim, model, dataset, length, seed, score, metric="mse", mode="min", width=64, **metrics):
    """Log one finished run the way a training run tags it, with chosen numbers."""
    run = store.create_run(None, {
        "claims": claim, "model": model, "dataset": dataset, "seed": str(seed), "task/metric": metric,
        "task/metric_mode": mode, "task/seq_len": str(length), "task/chance": "0.1667"})
    run.log_params({"dataset/seq_len": length, "model/hidden_size": width})
    run.log_metrics({f"test/{metric}": score, **metrics})
    run.set_status("FINISHED")


@pytest.fixture
def fill(store):
    opened = tracking.Store.open(store, "claims")

    def add(claim, model, length, scores, dataset="adding", width=64, **metrics):
        for seed, score in enumerate(scores):
            record(opened, claim, model, dataset, length, seed, score, width=width,
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


def test_c1_supported_mixed_not_supported_and_not_enough(store, fill):
    assert c1(load_runs(store)).verdict == NOT_ENOUGH
    fill("C1", "lstm", 20, [0.01, 0.02, 0.015])
    fill("C1", "rnn", 20, [0.15, 0.16, 0.17])
    assert c1(load_runs(store)).verdict == NOT_ENOUGH  # one setting is not enough
    fill("C1", "lstm", 50, [0.02, 0.03, 0.025])
    fill("C1", "rnn", 50, [0.16, 0.17, 0.165])
    assert c1(load_runs(store)).verdict == SUPPORTED
    fill("C1", "lstm", 100, [0.16, 0.17, 0.18])
    fill("C1", "rnn", 100, [0.01, 0.012, 0.011])
    fill("C1", "lstm", 200, [0.16, 0.17, 0.18])
    fill("C1", "rnn", 200, [0.16, 0.18, 0.17])
    verdict = c1(load_runs(store))
    assert verdict.verdict == MIXED  # better on 2 of 4 settings
    assert "2 of 4 settings" in verdict.evidence


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
    assert c1(load_runs(store)).verdict == NOT_ENOUGH
    fill("C1", "lstm", 20, [0.02])  # seed 0 again: replaces the first
    assert len(claim_runs(load_runs(store), "C1")) == 4


def test_c2_reads_gradient_decay_at_both_stages(store, fill):
    fill("C2", "lstm", 50, [0, 0, 0], **{"grad/decay_log10_init": [-1.0, -1.1, -0.9], "grad/decay_log10_trained": [-0.5, -0.6, -0.4]})
    fill("C2", "rnn", 50, [0, 0, 0], **{"grad/decay_log10_init": [-8.0, -7.5, -8.2], "grad/decay_log10_trained": [-6.0, -5.5, -6.1]})
    verdict = c2(load_runs(store))
    assert verdict.verdict == SUPPORTED
    assert "2 of 2 settings" in verdict.evidence


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
    assert all(r["lstm"].n == 3 for r in verdict.rows)


def test_c4_needs_both_the_forget_gate_and_janet(store, fill):
    for length in (50, 100):
        fill("C4", "lstm", length, [0.02, 0.03, 0.025])
        fill("C4", "lstm_nfg", length, [0.16, 0.17, 0.165])
        fill("C4", "lstm_nig", length, [0.03, 0.04, 0.035])
        fill("C4", "lstm_nog", length, [0.03, 0.02, 0.025])
        fill("C4", "janet", length, [0.02, 0.025, 0.03])
    verdict = c4(load_runs(store))
    assert verdict.verdict == MIXED  # (a) supported, (b) JANET ties: not supported
    assert "(a)" in verdict.evidence and "supported" in verdict.evidence


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
    assert row["lstm"].mean == pytest.approx(lstm_4.mean())
    assert row["lstm"].n == 2
    assert verdict.verdict in (SUPPORTED, NOT_SUPPORTED, MIXED)

    out = tmp_path / "report"
    assert report_main(["--uri", store, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| C1 |" in text and "not enough runs" in text  # C2..C5 have no runs here
    assert (out / "c1_score_vs_length.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (out / "report.html").read_text()
    (report_run,) = [r for r in MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("report").experiment_id])]
    assert report_run.data.tags["verdict/C1"] == verdict.verdict
    names = {a.path for a in MlflowClient(store).list_artifacts(report_run.info.run_id)}
    assert {"report.md", "report.html", "c1_score_vs_length.png"} <= names


def test_report_without_a_store_is_one_line(tmp_path, capsys):
    assert report_main(["--uri", str(tmp_path / "none.db"), "--out", str(tmp_path / "r")]) == 1
    assert "no MLflow store" in capsys.readouterr().err
