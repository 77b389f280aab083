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
import socket
from dataclasses import dataclass

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from grubench.harness.arguments import add_store_argument, existing_store
from grubench.harness.command import run_command
from grubench.harness.provenance import owner_alive
from grubench.harness.store import Run, Store


@dataclass
class Change:
    run_id: str
    name: str
    status: str
    reason: str


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
            run = Run(Store(uri, client, ""), change.run_id, change.name)
            run.set_tags({"error": change.reason, "closed_by": "grubench.reap"})
            run.set_status(change.status)
    if elsewhere:
        print(f"left alone, RUNNING on other hosts (run gc there): {', '.join(elsewhere)}")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grubench.harness.reap", description=__doc__.split("\n\n")[0])
    add_store_argument(parser)
    parser.add_argument("--experiment", help="only this experiment (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    args = parser.parse_args(argv)
    uri = existing_store(args.store)
    changes = collect(uri, args.experiment, args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for change in changes:
        print(f"{verb} {change.status}: run {change.run_id} ({change.name}): {change.reason}")
    print(f"{len(changes)} dead run(s) {'found' if args.dry_run else 'closed'} in {uri}")
    return 0


if __name__ == "__main__":
    run_command("grubench.harness.reap", main)
