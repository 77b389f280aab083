"""`bash scripts/gpu_check.sh --rehearse`: both GPU commands' steps at toy size on the CPU, into
the file names the real commands write, so that CI checks the scripts every time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK_FILES = ["check-bench.tar.gz", "check-logs.tar.gz", "check-mlflow.tar.gz", "check-summary.txt"]
FULL_FILES = ["full-logs.tar.gz", "full-mlflow.tar.gz", "full-report.tar.gz", "full-summary.txt"]


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def runs(db: Path, experiment: str | None = None) -> list[tuple[str, dict]]:
    """(status, {tag or param: value}) of the runs in a store, read with sqlite3 (fast, no MLflow)."""
    with sqlite3.connect(db) as con:
        query = "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id"
        rows = con.execute(query + (" WHERE e.name = ?" if experiment else ""), (experiment,) if experiment else ()).fetchall()
        return [(status, dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ? UNION ALL "
                                          "SELECT key, value FROM params WHERE run_uuid = ?", (run, run)).fetchall()))
                for run, status in rows]


@pytest.mark.slow
def test_the_rehearsal_writes_what_the_gpu_commands_write(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--rehearse"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(CHECK_FILES + FULL_FILES)
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())

    # the check: the main command in each precision, FINISHED, with the dtype that ran
    check = unpack(out / "check-mlflow.tar.gz", tmp_path / "check")
    main = runs(check / "mlflow.db", "gpu_check")
    assert sorted(tags["trainer/precision"] for _, tags in main) == ["16-mixed", "32-true", "bf16-mixed"]
    assert all(status == "FINISHED" and tags["precision/recurrent_dtype"] for status, tags in main)
    summary = (out / "check-summary.txt").read_text()
    assert "plain/harness step-time ratio" in summary and "rnn : gru : lstm" in summary
    assert (unpack(out / "check-bench.tar.gz", tmp_path / "bench") / "bench" / "bench.csv").is_file()

    # the full study: packed jobs FINISHED in one store, a report, the settings left out
    full = unpack(out / "full-mlflow.tar.gz", tmp_path / "full")
    jobs = [(s, t) for s, t in runs(full / "mlflow.db") if t.get("sweep") != "parent" and "claims" in t]
    assert jobs and all(status == "FINISHED" for status, _ in jobs)
    (parent,) = [t for _, t in runs(full / "mlflow.db") if t.get("sweep") == "parent"]
    assert int(parent["study/started"]) == len(jobs) and int(parent["study/left_out"]) > 0
    report = unpack(out / "full-report.tar.gz", tmp_path / "report") / "report-full"
    assert (report / "report.md").is_file()
    left = json.loads((report / "left_out.json").read_text())
    assert left["started"] == len(jobs) and left["runs"] == left["started"] + left["left_out"]
    assert "study full:" in (out / "full-summary.txt").read_text()
