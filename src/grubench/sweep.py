"""Multiruns: one parent MLflow run per sweep, every job a child of it.

`MultirunParent` is a Hydra callback (registered in config.yaml). When a sweep starts it creates
the store and the experiment once, before any job, opens the parent run and writes its id into
the sweep folder, where every job (in this process or another) reads it. When the sweep ends it
counts the jobs that failed, closes the parent, and exits non-zero if any did.

A job that fails writes its one-line error to `<job folder>/FAILED` and returns, so the other
jobs go on and the parent is always closed. A search (grubench's Optuna sweeper) expects some
trials to fail: once it has a best trial (`best_trial.yaml` in the sweep folder) its parent
ends FINISHED, the failures counted in its tags.

A search started again in its folder (resumed) reopens its parent run and keeps its trials'
records; any other sweep started in a used folder gets a new parent. A sweep whose jobs would
each use several devices is refused before it starts (devices.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from grubench import devices, tracking
from grubench.config import ConfigError

PARENT_ID_FILE = "mlflow_parent_run_id"
FAILED_FILE = "FAILED"
BEST_FILE = "best_trial.yaml"
SEARCH_SWEEPER = "hydra_plugins.grubench_optuna_sweeper."


def read_parent_id(sweep_dir: Path) -> str | None:
    path = sweep_dir / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


def mark_job_failed(message: str) -> None:
    """Leave the job's one-line error where the sweep's end will find it."""
    (Path(HydraConfig.get().runtime.output_dir) / FAILED_FILE).write_text(message + "\n")


def mark_parent_killed(config: DictConfig) -> None:
    """A sweep interrupted in one of its jobs ends there: close the parent run KILLED."""
    parent = read_parent_id(Path(HydraConfig.get().sweep.dir))
    if parent is not None:
        client, _ = tracking.open_store(tracking.resolve_uri(config.tracking.uri), config.tracking.experiment)
        tracking.set_tags(client, parent, {"error": "sweep interrupted (Ctrl-C or SIGTERM)"})
        client.set_terminated(parent, "KILLED")


def reopen_parent(client, run_id: str) -> bool:
    """Reopen parent run `run_id` for a sweep started again in its folder; False if it is not in the store."""
    try:
        tags = client.get_run(run_id).data.tags
    except Exception:  # noqa: BLE001 - deleted, or in another store: the sweep gets a new parent
        return False
    client.update_run(run_id, status="RUNNING")
    if "error" in tags:
        client.delete_tag(run_id, "error")
    env = tracking.environment_tags()
    tracking.set_tags(client, run_id, {key: env[key] for key in ("host", "pid", "pid_start")})
    return True


class MultirunParent(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            devices.check_sweep_devices(config)
        except ConfigError as error:
            print(f"grubench: error: {error}", file=sys.stderr)
            sys.exit(1)
        uri = tracking.resolve_uri(config.tracking.uri)
        client, experiment_id = tracking.open_store(uri, config.tracking.experiment)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        existing = read_parent_id(sweep_dir)
        searching = str(config.hydra.sweeper.get("_target_", "")).startswith(SEARCH_SWEEPER)
        if searching and existing and reopen_parent(client, existing):
            return
        for stale in sweep_dir.glob(f"*/{FAILED_FILE}"):  # left by an earlier sweep in the same folder
            stale.unlink()
        overrides = " ".join(config.hydra.overrides.task)
        run = client.create_run(experiment_id, run_name=f"sweep {overrides}".strip(), tags={
            **tracking.environment_tags(), "sweep": "parent", "overrides": overrides,
            "claims": ",".join(config.get("claims") or []), "sweep_dir": str(sweep_dir.resolve()),
        })
        (sweep_dir / PARENT_ID_FILE).write_text(run.info.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        parent = read_parent_id(sweep_dir)
        if parent is None:
            return
        uri = tracking.resolve_uri(config.tracking.uri)
        client, _ = tracking.open_store(uri, config.tracking.experiment)
        failures = sorted(sweep_dir.glob(f"*/{FAILED_FILE}"))
        jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
        tracking.set_tags(client, parent, {"jobs/total": len(jobs), "jobs/failed": len(failures)})
        if failures and (sweep_dir / BEST_FILE).exists():
            print(f"search: {len(failures)} of {len(jobs)} trials failed (their runs say why); "
                  f"best trial in {sweep_dir / BEST_FILE}")
        elif failures:
            message = f"{len(failures)} of {len(jobs)} jobs failed, first: job {failures[0].parent.name}: " \
                      f"{failures[0].read_text().strip()}"
            tracking.set_tags(client, parent, {"error": message})
            client.set_terminated(parent, "FAILED")
            print(f"grubench: error: {message}", file=sys.stderr)
            sys.exit(1)
        client.set_terminated(parent, "FINISHED")
        print(f"sweep finished: {len(jobs)} jobs, parent run {parent}\n  browse: mlflow ui --backend-store-uri {uri}")
