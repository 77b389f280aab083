"""`python -m grubench.harness.reap`: close the runs whose process is gone.

A run killed by SIGKILL, the out-of-memory killer, a crash of the machine or a lost node never
closes itself and stays RUNNING for ever. Every run records the host and process that own it
(tags `host`, `pid`, `pid_start`); for each RUNNING run on this host whose process no longer
exists (or whose pid now belongs to a later process), this command sets

    KILLED  when the run had recorded that a signal arrived (its `error` tag says "interrupted")
            and died before it could close itself
    FAILED  otherwise, with the error "process <pid> on <host> ended without closing the run"

and prints what it changed. Runs on other hosts are listed, not touched: run gc there.

    python -m grubench.harness.reap [tracking.uri=STORE] [--experiment NAME] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from grubench.errors import GrubenchError
from grubench.harness import tracking


@dataclass
class Change:
    run_id: str
    name: str
    status: str
    reason: str


def process_alive(pid: int, started: int | None) -> bool:
    """Whether process `pid` exists and is the one that started at `started` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or tracking.process_start(pid) in (None, started)


def owner_alive(tags: dict) -> bool:
    """Whether the process that owns a run (its tags host, pid, pid_start) may still run: True
    for another host's run or one without a pid, which this host cannot judge."""
    if tags.get("host") != socket.gethostname() or not tags.get("pid", "").isdigit():
        return True
    started = int(tags["pid_start"]) if tags.get("pid_start", "").isdigit() else None
    return process_alive(int(tags["pid"]), started)


def dead_runs(client, experiment_ids: list[str], host: str) -> tuple[list[Change], list[str]]:
    """(changes to make, ids of RUNNING runs on other hosts)."""
    changes, elsewhere = [], []
    running = client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", run_view_type=ViewType.ALL,
                                 max_results=50000)
    for run in running:
        tags = run.data.tags
        if tags.get("host") != host:
            elsewhere.append(f"{run.info.run_id} ({tags.get('host', 'no host tag')})")
            continue
        if owner_alive(tags):
            continue
        signalled = tags.get("error", "").startswith("interrupted")
        reason = tags["error"] if signalled else f"process {tags['pid']} on {host} ended without closing the run"
        changes.append(Change(run.info.run_id, run.info.run_name, "KILLED" if signalled else "FAILED", reason))
    return changes, elsewhere


def collect(uri: str, experiment: str | None = None, dry_run: bool = False, host: str | None = None) -> list[Change]:
    """Find the dead RUNNING runs of `experiment` (all experiments when None) and close them."""
    client = MlflowClient(uri)
    if experiment is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    else:
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [found.experiment_id] if found else []
    if not experiment_ids:
        return []
    changes, elsewhere = dead_runs(client, experiment_ids, host or socket.gethostname())
    for change in changes:
        if not dry_run:
            run = tracking.Run(tracking.Store(uri, client, ""), change.run_id, change.name)
            run.set_tags({"error": change.reason, "closed_by": "grubench.reap"})
            run.set_status(change.status)
    if elsewhere:
        print(f"left alone, RUNNING on other hosts (run gc there): {', '.join(elsewhere)}")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grubench.harness.reap", description=__doc__.split("\n\n")[0])
    tracking.add_store_argument(parser)
    parser.add_argument("--experiment", help="only this experiment (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    args = parser.parse_args(argv)
    try:
        uri = tracking.store_from_argument(args.store)
    except GrubenchError as error:
        print(f"grubench.harness.reap: error: {error}", file=sys.stderr)
        return 1
    path = tracking.sqlite_path(uri)
    if path is not None and not path.exists():
        print(f"grubench.harness.reap: error: no MLflow store at {path}", file=sys.stderr)
        return 1
    changes = collect(uri, args.experiment, args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for change in changes:
        print(f"{verb} {change.status}: run {change.run_id} ({change.name}): {change.reason}")
    print(f"{len(changes)} dead run(s) {'found' if args.dry_run else 'closed'} in {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
