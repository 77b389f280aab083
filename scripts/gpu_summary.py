"""The numbers scripts/gpu_check.sh was run for, read from its work folder:

    python scripts/gpu_summary.py WORK_DIR

WORK_DIR holds logs/preflight.log, logs/overhead.log, mlflow.db (the main command's runs in the
experiment `gpu_check`) and bench/bench.csv. Prints the machine; per precision the main
command's time, test metric and the recurrent layer's dtype that ran; the harness/plain-loop
step-time ratio; and cuDNN rnn : gru : lstm training-step times beside DeepBench's V100 ratio.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

DEEPBENCH = "1 : 1.3-1.55 : 2.0"  # DeepBench, V100, per-step training time of rnn : gru : lstm


def machine(work: Path) -> str:
    path = work / "logs" / "preflight.log"
    return path.read_text().splitlines()[0] if path.exists() else "machine: unknown"


def main_runs(work: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("gpu_check")
    if experiment is None:
        return ["main command: no runs recorded"]
    times = {}
    if (work / "logs" / "main_times.txt").exists():
        times = dict(line.split() for line in (work / "logs" / "main_times.txt").read_text().splitlines() if line)
    lines = ["main command (python -m grubench +model=gru trainer=gpu), time of the whole command:",
             f"  {'precision':<11} {'status':<9} {'time s':>7} {'test metric':>20} {'recurrent dtype':>16} {'samples/s':>10}"]
    for run in sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time):
        tags, metrics = run.data.tags, run.data.metrics
        precision = run.data.params.get("trainer/precision", "?")
        seconds = float(times.get(precision, "nan"))
        metric = tags.get("task/metric", "?")
        score = metrics.get(f"test/{metric}", float("nan"))
        lines.append(f"  {precision:<11} {run.info.status:<9} {seconds:>7.1f} {f'test/{metric} {score:.4f}':>20} "
                     f"{tags.get('precision/recurrent_dtype', '?'):>16} {metrics.get('speed/train_samples_per_s', float('nan')):>10.0f}")
    return lines


def overhead(work: Path) -> list[str]:
    path = work / "logs" / "overhead.log"
    text = path.read_text() if path.exists() else ""
    found = re.search(r"median: step ratio \(harness/raw throughput\) ([\d.]+), harness adds ([-\d.]+) ms", text)
    if not found:
        return ["harness vs plain loop: no result (see logs/overhead.log)"]
    ratio, extra = float(found.group(1)), float(found.group(2))
    return [f"harness vs plain loop: plain/harness step-time ratio {ratio:.3f} (harness adds {extra:.3f} ms per step)"]


def bench(work: Path) -> list[str]:
    path = work / "bench" / "bench.csv"
    if not path.exists():
        return ["bench grid: no bench.csv"]
    rows = [r for r in csv.DictReader(path.open()) if r["status"] == "ok"]
    lines = [f"bench grid: {len(rows)} cells measured; cuDNN training step rnn : gru : lstm (DeepBench V100: {DEEPBENCH}):"]
    keys = sorted({(r["precision"], int(r["seq_len"]), int(r["hidden"]), int(r["batch"])) for r in rows})
    for precision, seq_len, hidden, batch in keys:
        times = {r["model"]: float(r["train_ms"]) for r in rows
                 if (r["precision"], int(r["seq_len"]), int(r["hidden"]), int(r["batch"])) == (precision, seq_len, hidden, batch)}
        if "rnn" not in times:
            continue
        ratio = " : ".join(f"{times[m] / times['rnn']:.2f}" if m in times else "-" for m in ("rnn", "gru", "lstm"))
        ms = ", ".join(f"{m} {times[m]:.2f} ms" for m in ("rnn", "gru", "lstm", "gru_doc", "janet") if m in times)
        lines.append(f"  {precision:<10} B={batch} T={seq_len:<5} H={hidden:<5} {ratio:<18} ({ms})")
    return lines


def main(work: Path) -> None:
    for part in (lambda: [machine(work)], lambda: main_runs(work), lambda: overhead(work), lambda: bench(work)):
        try:
            print("\n".join(part()))
        except Exception as error:  # noqa: BLE001 - a summary prints what it can
            print(f"(could not read: {type(error).__name__}: {error})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
