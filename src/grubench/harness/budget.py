"""A sweep's time budget, seen from its jobs: no job starts training after the deadline.

The study sweeper (study.py) writes the deadline, in seconds since the epoch, into the sweep
folder (`study_deadline`) before it launches any job. Each job looks at it first thing (the
entry point calls `left_out_by_budget` before it imports torch): a job that starts after the
deadline writes `LEFT_OUT` into its job folder and returns, opening no run. Jobs already
training at the deadline go on (the study bounds them with trainer.max_time).
"""

from __future__ import annotations

import time
from pathlib import Path

DEADLINE_FILE = "study_deadline"
LEFT_OUT_FILE = "LEFT_OUT"


def write_deadline(sweep_dir: Path, deadline: float) -> None:
    (sweep_dir / DEADLINE_FILE).write_text(f"{deadline:.3f}\n")


def deadline(sweep_dir: Path) -> float | None:
    path = sweep_dir / DEADLINE_FILE
    return float(path.read_text()) if path.exists() else None


def left_out_by_budget() -> bool:
    """In a sweep past its deadline: mark this job left out and return True; else False."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
        return False
    due = deadline(Path(HydraConfig.get().sweep.dir))
    if due is None or time.time() < due:
        return False
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / LEFT_OUT_FILE).write_text(f"started {time.time() - due:.1f} s after the study's deadline\n")
    return True


def skipped(job_dir: Path) -> bool:
    """Whether the job in `job_dir` was left out by the budget."""
    return (job_dir / LEFT_OUT_FILE).exists()
