"""The benchmark: its timing harness and grid on tiny cells (structure, not speed), the FLOP
formulas against a count of what ran, the memory measure, the scaling fit, the overhead entry."""

from __future__ import annotations

import csv
import functools
import math
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from torch import nn

from grubench.bench import scaling
from grubench.bench.cell import measure, saved_tensor_mb, time_call
from grubench.bench.flops import (
    counted_flops,
    formula_flops,
    forward_flops,
    train_flops,
)
from grubench.bench.grid import COLUMNS, Cell, cells, format_row, format_table
from grubench.config import build, choices, model_config
from grubench.errors import ConfigError
from grubench.models import SequenceModel
from grubench.spec import TaskSpec
from tests.cli import command


def spec(input_size=3, seq_len=6, output="regression", num_outputs=1, input_kind="real") -> TaskSpec:
    return TaskSpec(name="t", input_kind=input_kind, input_size=input_size, output=output,
                    num_outputs=num_outputs, seq_len=seq_len, metric="mse", chance={})


# --- timing -------------------------------------------------------------------------------

def test_time_call_runs_warmup_then_repeats_and_reports_median_and_spread():
    calls = []
    torch.set_num_threads(2)  # the one_thread fixture puts it back
    timing = time_call(lambda: calls.append(torch.get_num_threads()), warmup=2, repeats=7, max_seconds=60)
    assert len(calls) == 2 + 3 * 7  # the Timer runs each timed call twice untimed first
    assert set(calls) == {2}  # torch's thread count, not the Timer's default of one
    assert timing.repeats == 7
    assert 0 <= timing.min_ms <= timing.median_ms
    assert timing.iqr_pct >= 0


def test_time_call_stops_repeating_after_max_seconds_but_keeps_three():
    timing = time_call(lambda: time.sleep(0.02), warmup=0, repeats=50, max_seconds=0.01)
    assert timing.repeats == 3
    assert timing.median_ms >= 20


def test_saved_tensor_mb_counts_what_autograd_keeps_without_parameters():
    layer = nn.Linear(5, 3)
    x = torch.randn(7, 5)
    # addmm keeps its input x for the weight gradient; the weight it keeps is the parameter itself
    assert saved_tensor_mb(layer, lambda: layer(x).sum()) == pytest.approx(7 * 5 * 4 / 2**20)


def test_measure_returns_every_measurement_of_a_cell():
    model = SequenceModel(spec(input_size=4), functools.partial(nn.GRU), name="gru", hidden_size=8)
    row = measure(model, torch.device("cpu"), "32-true", batch=2, seq_len=5, warmup=1, repeats=3, max_seconds=10)
    assert row["fwd_ms"] > 0 and row["train_ms"] > 0 and row["repeats"] == 3
    assert row["dtype"] == "float32"
    assert row["grad_finite"] is True
    assert row["saved_mb"] > 0
    assert math.isnan(row["peak_mb"])  # no CUDA peak off a GPU
    assert all(p.grad is None for p in model.parameters())  # left as found


def test_measure_records_the_dtype_that_ran_under_autocast():
    model = SequenceModel(spec(input_size=4), functools.partial(nn.RNN), name="rnn", hidden_size=8)
    row = measure(model, torch.device("cpu"), "bf16-mixed", batch=2, seq_len=5, warmup=0, repeats=1, max_seconds=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ran = model.recurrent(torch.randn(2, 5, 4))[0].dtype
    assert row["dtype"] == str(ran).replace("torch.", "")


def test_measure_rejects_an_unknown_precision():
    model = SequenceModel(spec(), functools.partial(nn.RNN), hidden_size=4)
    with pytest.raises(ValueError, match="precision"):
        measure(model, torch.device("cpu"), "8-true", batch=1, seq_len=2, warmup=0, repeats=1, max_seconds=1)


# --- FLOPs --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", choices("model"))
def test_flop_formula_matches_the_products_that_ran(name):
    # the equations' products, as a cell's step loop runs them (on the fused LSTM kernel an
    # ablation also multiplies its constant fourth gate) and as torch's layers run them
    # (grubench's CPU kernels skip the products of a zero initial state)
    cfg = model_config(name, ["model.hidden_size=6"])
    if OmegaConf.select(cfg, "model.recurrent.cell") is not None:
        cfg.model.recurrent.impl = "loop"
    elif OmegaConf.select(cfg, "model.recurrent.impl") is not None:
        cfg.model.recurrent.impl = "fused"
    model = build(cfg.model, "model", task=spec(input_size=5, seq_len=7))
    assert formula_flops(model, 3, 7, matmul_only=True) == counted_flops(model, 3, 7)
    assert formula_flops(model, 3, 7) > formula_flops(model, 3, 7, matmul_only=True)  # + bias and elementwise


@pytest.mark.parametrize("kwargs", [
    {"num_layers": 2},
    {"embed_dim": 4},
    {"bidirectional": True},
])
def test_flop_formula_matches_the_count_for_stacks_encodings_and_directions(kwargs):
    model = SequenceModel(spec(input_size=5), functools.partial(nn.LSTM), hidden_size=6, **kwargs)
    assert formula_flops(model, 2, 9, matmul_only=True) == counted_flops(model, 2, 9)


def test_flop_formula_counts_a_per_step_head_every_step():
    task = spec(input_size=10, input_kind="tokens", output="per_step_classification", num_outputs=9)
    model = SequenceModel(task, functools.partial(nn.GRU), hidden_size=4)
    assert formula_flops(model, 2, 6, matmul_only=True) == counted_flops(model, 2, 6)


def test_flop_formula_by_hand_for_a_gru():
    model = SequenceModel(spec(input_size=3), functools.partial(nn.GRU), hidden_size=4)
    products = 2 * 3 * 4 * (3 + 4) * 10 + 2 * 4 * 1  # 10 steps of 3 gate blocks, then the head once
    assert formula_flops(model, 1, 10, matmul_only=True) == products
    flops, source = forward_flops(model, 2, 10)
    assert source == "formula" and flops > 2 * products
    assert train_flops(flops) == 3 * flops


def test_forward_flops_counts_what_the_formula_does_not_know():
    class Elman(nn.Module):
        def __init__(self, input_size, hidden_size, **_):
            super().__init__()
            self.cell = nn.RNNCell(input_size, hidden_size)

        def forward(self, x):
            h, outs = None, []
            for x_t in x.unbind(1):
                h = self.cell(x_t, h)
                outs.append(h)
            return torch.stack(outs, 1), h

    model = SequenceModel(spec(input_size=3), Elman, hidden_size=4)
    flops, source = forward_flops(model, 2, 5)
    assert source == "counted"
    assert flops == 2 * (5 * 2 * 4 * (3 + 4) + 2 * 4)


# --- grid, table, scaling -----------------------------------------------------------------

def test_cells_are_the_product_of_the_grid():
    grid = OmegaConf.create({"models": ["rnn", "gru"], "device": ["cpu"], "precision": ["32-true", "bf16-mixed"],
                             "batch": [2], "seq_len": [5, 10, 20], "hidden": [8]})
    todo = cells(grid)
    assert len(todo) == 2 * 2 * 3
    assert todo[:2] == [Cell("rnn", "cpu", "32-true", 2, 5, 8), Cell("gru", "cpu", "32-true", 2, 5, 8)]
    assert todo[-1] == Cell("gru", "cpu", "bf16-mixed", 2, 20, 8)


def test_scaling_fit_recovers_known_exponents():
    rows = [{"status": "ok", "seq_len": T, "hidden": H, "train_ms": 0.01 * T * H**2, "fwd_ms": 0.02 * T**0.5 * H}
            for T in (10, 20, 40) for H in (8, 16, 32)]
    fitted = scaling.fit(rows, "train_ms")
    assert fitted["p_seq_len"] == pytest.approx(1.0) and fitted["q_hidden"] == pytest.approx(2.0)
    assert fitted["r2"] == pytest.approx(1.0)
    assert scaling.fit(rows, "fwd_ms")["p_seq_len"] == pytest.approx(0.5)
    one_hidden = [r for r in rows if r["hidden"] == 8]
    assert math.isnan(scaling.fit(one_hidden, "train_ms")["q_hidden"])


def test_table_shows_skipped_cells_and_missing_numbers():
    row = {name: math.nan for name in COLUMNS}
    row.update(model="lstm", device="cuda", precision="bf16-mixed", dtype="", batch=4, seq_len=8, hidden=16,
               input_size=16, grad_finite="", status="skipped: no CUDA device")
    line = format_row(row)
    assert "skipped: no CUDA device" in line and " - " in line
    assert format_table([row]).splitlines()[0].startswith("model")


def test_bench_command_runs_a_tiny_grid_into_csv_table_and_mlflow(tmp_path, store):
    args = ["grid=tiny", "grid.models=[gru_doc,nosuch]", "grid.device=[cpu,cuda]", "grid.seq_len=[3,6]",
            "grid.hidden=[4]", "warmup=0", "repeats=2", "progress=false", f"tracking.uri={store}",
            f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    done = command("grubench.bench", args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scaling: time ~ T^p H^q" in done.stdout

    with open(tmp_path / "out" / "bench.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 2
    assert list(rows[0]) == COLUMNS
    status = {(r["model"], r["device"]): r["status"] for r in rows}
    assert status[("gru_doc", "cpu")] == "ok"
    assert status[("nosuch", "cpu")].startswith("skipped: no model config 'nosuch'")
    if not torch.cuda.is_available():
        assert status[("gru_doc", "cuda")] == "skipped: no CUDA device"
    ran = [r for r in rows if r["status"] == "ok"]
    assert all(float(r["train_ms"]) > 0 and float(r["gflop_train"]) > 0 and r["dtype"] == "float32" for r in ran)
    assert (tmp_path / "out" / "scaling.csv").exists() and (tmp_path / "out" / "table.txt").exists()

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("bench")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("bench/role") == "grid"]
    children = [r for r in runs if r.data.tags.get("bench/role") == "cell"]
    assert len(children) == len(rows)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    (cell,) = [r for r in children if r.info.run_name == "gru_doc-cpu-32-true-B4-T6-H4"]
    assert cell.data.params["seq_len"] == "6" and cell.data.params["model/name"] == "gru_doc"
    assert cell.data.metrics["time/train_ms"] > 0 and cell.data.metrics["params/total"] > 0
    assert cell.data.tags["precision/recurrent_dtype"] == "float32"
    assert cell.data.tags["model/impl"] == "loop"
    assert cell.data.tags["version/torch"] == torch.__version__
    assert {"tf32/matmul", "tf32/cudnn", "version/cudnn"} <= set(cell.data.tags)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"bench.csv", "scaling.csv", "table.txt"} <= artifacts


def test_model_config_names_the_choices_for_an_unknown_model():
    with pytest.raises(ConfigError, match="one of: .*gru"):
        model_config("nosuch")


def test_overhead_measures_harness_and_plain_loop_on_the_same_steps(tmp_path):
    from grubench.bench.overhead import measure as overhead

    result = overhead(["model.hidden_size=4", "dataset.seq_len=4", "dataset.train_size=64", "dataset.val_size=16",
                       "dataset.test_size=16", "dataset.batch_size=8", "trainer.limit_train_batches=8",
                       "trainer.limit_val_batches=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"],
                      rounds=1, skip=1, uri=str(tmp_path / "mlflow.db"))
    (first,) = result["rounds"]
    assert first["steps"] == first["plain_steps"] == 8
    assert first["harness_step_ms"] > 0 and first["plain_step_ms"] > 0
    assert result["summary"]["step_ratio"] == pytest.approx(first["plain_step_ms"] / first["harness_step_ms"])
    runs = MlflowClient(result["uri"]).search_runs(
        [MlflowClient(result["uri"]).get_experiment_by_name("overhead").experiment_id])
    assert len(runs) == 1 and "train/loss" in runs[0].data.metrics


def test_time_budget_records_the_cells_left_as_skipped():
    from grubench.bench.grid import run_grid

    settings = OmegaConf.create({
        "grid": {"models": ["rnn", "gru"], "device": ["cpu"], "precision": ["32-true"], "batch": [2],
                 "seq_len": [3], "hidden": [4]},
        "input_size": None, "model_overrides": [], "warmup": 0, "repeats": 1, "max_seconds": 1.0, "seed": 0,
        "budget_s": 0,
    })
    rows = run_grid(settings, progress=False)
    assert [(r["model"], r["status"]) for r in rows] == [("rnn", "skipped: time budget of 0 s spent"),
                                                         ("gru", "skipped: time budget of 0 s spent")]
