"""`python -m grubench.bench [grid=cpu|gpu|tiny] [overrides]`: the speed and memory benchmark.

Measures every cell of the grid (grid.py, cell.py), prints a row per cell under a progress bar,
then the whole table and the scaling exponents (scaling.py); writes bench.csv, scaling.csv and
table.txt into the output folder; logs one MLflow run per cell under a parent run.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from grubench.bench import scaling
from grubench.bench.grid import environment, format_table, run_grid, write_csv
from grubench.harness import allocator
from grubench.harness.command import hydra_task, run_command


def output_folder(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def apply_numeric_flags(cfg: DictConfig) -> None:
    if cfg.get("tf32") is not None:
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    allocator.keep_freed_memory()   # as a training run does: the bench times the same steps


def bench(cfg: DictConfig) -> list[dict]:
    """Run the grid of `cfg` (the bench config); return its rows."""
    apply_numeric_flags(cfg)
    folder = output_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    env = environment()
    print("bench: " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    names = ("bench.csv", "scaling.csv", "table.txt")
    with ExitStack() as stack:
        recorder = None
        if cfg.tracking.enabled:  # MLflow loads only when the grid is recorded
            from grubench.bench.record import BenchRecorder
            from grubench.harness.runs import tracked_run
            from grubench.harness.store import Store, resolve_uri

            store = Store.open(resolve_uri(cfg.tracking.uri), cfg.experiment)
            parent = stack.enter_context(tracked_run(store, cfg.get("run_name") or f"bench-{cfg.grid.name}",
                                                     logs=[folder / n for n in names]))
            recorder = BenchRecorder(parent, cfg, env)
            stack.callback(lambda: print(f"  browse: {store.browse_hint()}", flush=True))
        rows = run_grid(cfg, on_row=recorder.log_cell if recorder else None, progress=cfg.progress)
        exponents = scaling.exponents(rows)
        write_csv(rows, folder / "bench.csv")
        if exponents:
            write_csv(exponents, folder / "scaling.csv", list(exponents[0]))
        text = format_table(rows) + "\n\n" + scaling.format_table(exponents) + "\n"
        (folder / "table.txt").write_text(text)
        print("\n" + text, flush=True)
        print(f"bench: {len(rows)} cells, {sum(r['status'] == 'ok' for r in rows)} ran; csv: {folder / 'bench.csv'}")
        return rows


@hydra.main(version_base="1.3", config_path="pkg://grubench.conf", config_name="bench")
@hydra_task
def main(cfg: DictConfig) -> None:
    bench(cfg)


if __name__ == "__main__":
    run_command("grubench.bench", main, hydra_app=True)
