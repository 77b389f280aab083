"""Run a benchmark grid: every (model, device, precision, batch, hidden, seq_len) cell, measured
by `cell.measure`, printed as a table while it runs, written to a CSV and logged to MLflow.

Each cell builds the model from its packaged config (conf/model/NAME.yaml) with
`hidden_size=H`, for a regression task on real inputs of `input_size` features (H when null),
so a new model config is benchmarked as soon as it exists. A cell that cannot run (no such
device, a precision the device or a layer does not support, out of memory, no such model config)
is recorded with status `skipped: <why>`, an unexpected failure with `error: <why>`; the grid
goes on either way.

Columns (CSV; the printed table shows most of them):

    model device precision      the cell; precision as requested (Lightning's names)
    dtype                       dtype of the recurrent layer's output: what actually ran
    impl                        the recurrent layer's path that ran: fused, loop or scan
                                (`Recurrent.last_impl`), kernel (grubench's CPU kernels); the grid's
                                `impl` sets it for every model with a choice of path, or per
                                model ({gru: fused, gru_doc: loop}; null: each config's own, auto)
    batch seq_len hidden input_size
    params                      parameters of the whole model
    fwd_ms fwd_min_ms fwd_iqr_pct         forward (no_grad) time: median, fastest, IQR/median %
    train_ms train_min_ms train_iqr_pct   forward+backward time, likewise
    repeats                     timed runs behind each median
    samples_per_s steps_per_s   training throughput: batch / train time, batch * seq_len / train time
    fwd_steps_per_s             forward throughput in time steps
    gflop_fwd gflop_train       FLOPs of one forward pass / training step of the batch (flops.py)
    gflops_train                achieved: gflop_train / train time, in GFLOP/s
    flops_source                "formula" or "counted" (see flops.py)
    saved_mb peak_mb            memory saved for backward; CUDA peak during a step (NaN on CPU)
    grad_finite                 every gradient finite after a training step
    status                      ok | skipped: why | error: why
    round                       which pass over the grid (`rounds`: the grid is measured that many
                                times, cell after cell, so that two models' timings interleave
                                A, B, A, B and a quiet or busy spell of the machine falls on both)
"""

from __future__ import annotations

import csv
import gc
import itertools
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from grubench.bench.cell import Skip, check_runnable, measure
from grubench.bench.flops import forward_flops, train_flops
from grubench.config import build, model_config
from grubench.errors import GrubenchError
from grubench.spec import TaskSpec

COLUMNS = [
    "model", "device", "precision", "dtype", "impl", "batch", "seq_len", "hidden", "input_size", "params",
    "fwd_ms", "fwd_min_ms", "fwd_iqr_pct", "train_ms", "train_min_ms", "train_iqr_pct", "repeats",
    "samples_per_s", "steps_per_s", "fwd_steps_per_s", "gflop_fwd", "gflop_train", "gflops_train",
    "flops_source", "saved_mb", "peak_mb", "grad_finite", "status", "round",
]
METRICS = {  # column -> MLflow metric name
    "params": "params/total", "fwd_ms": "time/fwd_ms", "fwd_min_ms": "time/fwd_min_ms",
    "fwd_iqr_pct": "time/fwd_iqr_pct", "train_ms": "time/train_ms", "train_min_ms": "time/train_min_ms",
    "train_iqr_pct": "time/train_iqr_pct", "samples_per_s": "speed/samples_per_s",
    "steps_per_s": "speed/steps_per_s", "fwd_steps_per_s": "speed/fwd_steps_per_s",
    "gflop_fwd": "flops/gflop_fwd", "gflop_train": "flops/gflop_train", "gflops_train": "flops/gflops_train",
    "saved_mb": "mem/saved_mb", "peak_mb": "mem/peak_mb",
}


@dataclass(frozen=True)
class Cell:
    model: str
    device: str
    precision: str
    batch: int
    seq_len: int
    hidden: int

    @property
    def label(self) -> str:
        return f"{self.model}-{self.device}-{self.precision}-B{self.batch}-T{self.seq_len}-H{self.hidden}"


def as_list(value) -> list:
    if OmegaConf.is_list(value):
        return list(value)
    return list(value) if isinstance(value, (list, tuple)) else [value]


def cells(grid: DictConfig) -> list[Cell]:
    """The grid's cells, sizes outermost and models innermost, so that models are compared at
    each size side by side (and a time budget cuts sizes, not models)."""
    missing = [k for k in ("models", "device", "precision", "batch", "seq_len", "hidden") if grid.get(k) is None]
    if missing:
        raise GrubenchError(f"bench grid is missing {', '.join(missing)}")
    return [Cell(m, d, p, int(b), int(t), int(h)) for d, p, b, h, t, m in itertools.product(
        as_list(grid.device), as_list(grid.precision), as_list(grid.batch), as_list(grid.hidden),
        as_list(grid.seq_len), as_list(grid.models))]


def environment() -> dict[str, str]:
    """Versions and numeric-mode flags that decide what a timing means."""
    cuda = torch.cuda.is_available()
    return {
        "version/torch": torch.__version__,
        "version/cuda": torch.version.cuda or "none",
        "version/cudnn": str(torch.backends.cudnn.version()) if cuda else "none",
        "tf32/matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "tf32/cudnn": str(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn/enabled": str(torch.backends.cudnn.enabled),
        "cudnn/benchmark": str(torch.backends.cudnn.benchmark),
        "threads": str(torch.get_num_threads()),
        "device/gpu": torch.cuda.get_device_name(0) if cuda else "none",
    }


def blank_row(cell: Cell, input_size: int, round_: int = 0) -> dict:
    row = {name: math.nan for name in COLUMNS}
    row.update(asdict(cell), input_size=input_size, dtype="", impl="", flops_source="", grad_finite="",
               status="ok", round=round_)
    return row


class Runner:
    """Builds and measures cells; model configs are composed once per model name."""

    def __init__(self, settings: DictConfig):
        self.settings = settings
        self.configs: dict[str, DictConfig] = {}

    def model_node(self, cell: Cell) -> DictConfig:
        if cell.model not in self.configs:
            self.configs[cell.model] = model_config(cell.model, list(self.settings.get("model_overrides") or []))
        cfg = self.configs[cell.model].copy()
        cfg.model.hidden_size = cell.hidden
        impl = self.settings.grid.get("impl")
        if isinstance(impl, DictConfig):     # a path per model: {gru: fused, lstm_eq: loop}
            impl = impl.get(cell.model)
        if impl and OmegaConf.select(cfg, "model.recurrent.impl") is not None:
            cfg.model.recurrent.impl = impl
        if OmegaConf.select(cfg, "dataset.seq_len") is not None:
            cfg.dataset.seq_len = cell.seq_len  # for model configs that read the length from the data set
        return cfg.model

    def run(self, cell: Cell, round_: int = 0) -> tuple[dict, DictConfig | None]:
        s = self.settings
        input_size = int(s.input_size) if s.get("input_size") else cell.hidden
        row = blank_row(cell, input_size, round_)
        node, model = None, None
        try:
            device = torch.device(cell.device)
            check_runnable(device, cell.precision)
            node = self.model_node(cell)
            spec = TaskSpec(name="bench", input_kind="real", input_size=input_size, output="regression",
                            num_outputs=1, seq_len=cell.seq_len, metric="mse", chance={})
            torch.manual_seed(int(s.seed))
            # What earlier cells left allocated is not this cell's: the peak is counted above it.
            before_mb = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
            model = build(node, "model", task=spec)
            row["params"] = sum(p.numel() for p in model.parameters())
            flops, row["flops_source"] = forward_flops(model, cell.batch, cell.seq_len)
            model.to(device)
            row.update(measure(model, device, cell.precision, cell.batch, cell.seq_len, int(s.warmup),
                               int(s.repeats), float(s.max_seconds), int(s.seed)))
            row["peak_mb"] -= before_mb
            train_s, fwd_s = row["train_ms"] / 1000, row["fwd_ms"] / 1000
            row.update(
                samples_per_s=cell.batch / train_s, steps_per_s=cell.batch * cell.seq_len / train_s,
                fwd_steps_per_s=cell.batch * cell.seq_len / fwd_s,
                gflop_fwd=flops / 1e9, gflop_train=train_flops(flops) / 1e9,
                gflops_train=train_flops(flops) / 1e9 / train_s,
            )
        except Skip as why:
            row["status"] = f"skipped: {why}"
        except torch.cuda.OutOfMemoryError:
            row["status"] = "skipped: out of GPU memory"
        except GrubenchError as why:
            row["status"] = f"skipped: {why}"
        except Exception as failure:  # noqa: BLE001 - one cell's failure must not stop the grid
            first = (str(failure).strip().splitlines() or [""])[0]
            row["status"] = f"error: {type(failure).__name__}: {first}"[:300]
        finally:
            del model
            gc.collect()  # a model held in a reference cycle would stay on the GPU until the next collection
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return row, node


# Printed table: (header, width, column, format)
TABLE = [
    ("model", 12, "model", "s"), ("dev", 4, "device", "s"), ("precision", 10, "precision", "s"),
    ("ran", 8, "dtype", "s"), ("path", 5, "impl", "s"), ("B", 4, "batch", "d"), ("T", 5, "seq_len", "d"),
    ("H", 5, "hidden", "d"),
    ("params", 9, "params", ",.0f"), ("fwd ms", 9, "fwd_ms", ".2f"), ("±%", 4, "fwd_iqr_pct", ".0f"),
    ("train ms", 9, "train_ms", ".2f"), ("±%", 4, "train_iqr_pct", ".0f"),
    ("samples/s", 10, "samples_per_s", ",.0f"), ("steps/s", 11, "steps_per_s", ",.0f"),
    ("GFLOP/s", 9, "gflops_train", ",.1f"), ("saved MB", 8, "saved_mb", ".1f"), ("peak MB", 8, "peak_mb", ".1f"),
]


def format_header() -> str:
    return " ".join(f"{h:<{w}}" if f == "s" else f"{h:>{w}}" for h, w, _, f in TABLE) + "  status"


def format_row(row: dict) -> str:
    parts = []
    for _, width, key, fmt in TABLE:
        value = row[key]
        if fmt == "s":
            parts.append(f"{str(value):<{width}.{width}}")
        elif isinstance(value, float) and math.isnan(value):
            parts.append(f"{'-':>{width}}")
        else:
            parts.append(f"{value:>{width}{fmt}}")
    status = row["status"]
    if status == "ok" and row["grad_finite"] is False:
        status = "ok, NON-FINITE GRADIENTS"
    return " ".join(parts) + "  " + status


def format_table(rows: list[dict]) -> str:
    return "\n".join([format_header(), *map(format_row, rows)])


def write_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    columns = columns or COLUMNS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_grid(settings: DictConfig, on_row=None, progress: bool = True) -> list[dict]:
    """Measure every cell of `settings.grid`, `settings.rounds` times over (round after round);
    `on_row(row, model_node)` is called after each cell. Once `settings.budget_s` seconds have
    passed, the cells left are recorded as skipped."""
    runner = Runner(settings)
    todo = [(cell, r) for r in range(int(settings.get("rounds") or 1)) for cell in cells(settings.grid)]
    budget = settings.get("budget_s")
    started = time.perf_counter()
    rows = []
    bar = tqdm(total=len(todo), desc="bench", file=sys.stderr, dynamic_ncols=True, disable=not progress,
               leave=False)
    tqdm.write(format_header())
    for cell, round_ in todo:
        bar.set_postfix_str(cell.label)
        if budget is not None and time.perf_counter() - started > budget:
            row, node = blank_row(cell, int(settings.input_size or cell.hidden), round_), None
            row["status"] = f"skipped: time budget of {budget} s spent"
        else:
            row, node = runner.run(cell, round_)
        rows.append(row)
        tqdm.write(format_row(row))
        if on_row is not None:
            on_row(row, node)
        bar.update()
    bar.close()
    return rows
