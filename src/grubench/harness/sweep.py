"""Multiruns: one parent MLflow run per sweep, every job a child of it.

`MultirunParent` is a Hydra callback (registered in config.yaml). When a sweep starts it checks
the sweep, creates the store and the experiment once, before any job, opens the parent run
(`runs.tracked_run`) and writes its id into the sweep folder, where every job (in this process
or another) reads it. When the sweep ends it counts the jobs that failed and closes the parent:
FAILED, with the first failure, if any job failed (the command then exits 1), else FINISHED.
Hydra turns a callback's Exception into a warning, so a refusal leaves the callback as `Refused`.
Hydra calls nothing when a launcher or sweeper raises (or on Ctrl-C), so the entry point calls
`close_parent` with what ended the command: the parent is closed FAILED or KILLED then.

A job that fails writes its one-line error to `<job folder>/FAILED` and returns, so the other
jobs go on. A search (grubench's Optuna sweeper, search.py) and a study (study.py) open their
own parent, after their own checks (`open_parent`): a refused search or study changes no run.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from grubench.errors import ConfigError, GrubenchError, Refused, SweepFailed, first_line
from grubench.harness.quiet import quiet

if TYPE_CHECKING:
    from grubench.harness.store import Run, Store

# Hydra builds the MultirunParent callback for every command, a refused one too: MLflow and
# Lightning (tracking, runs, devices, reap) load inside the methods that use them, so that a
# config error answers before they do.

PARENT_ID_FILE = "mlflow_parent_run_id"
FAILED_FILE = "FAILED"
BEST_FILE = "best_trial.yaml"
SEARCH_SWEEPER = "hydra_plugins.grubench_optuna_sweeper."
STUDY_SWEEPER = "hydra_plugins.grubench_study_sweeper."

# This process's open sweep parent: (the stack that holds its tracked_run, the run), until
# on_multirun_end or the entry point calls close_parent.
_parent: tuple[ExitStack, Run] | None = None


def multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN"


def read_parent_id(sweep_dir: Path) -> str | None:
    path = sweep_dir / PARENT_ID_FILE
    return path.read_text().strip() if path.exists() else None


def parent_run_id() -> str | None:
    """The running multirun's parent run, written into the sweep folder when the sweep started."""
    return read_parent_id(Path(HydraConfig.get().sweep.dir)) if multirun() else None


def mark_job_failed(message: str) -> None:
    """Leave the job's one-line error where the sweep's end will find it."""
    (Path(HydraConfig.get().runtime.output_dir) / FAILED_FILE).write_text(message + "\n")


def sweeper(config: DictConfig) -> str:
    return str(config.hydra.sweeper.get("_target_", ""))


def searching(config: DictConfig) -> bool:
    return sweeper(config).startswith(SEARCH_SWEEPER)


def failed_jobs(sweep_dir: Path) -> tuple[list[Path], list[Path]]:
    """(every job folder of the sweep, the FAILED files of the jobs that failed)."""
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return jobs, sorted(sweep_dir.glob(f"*/{FAILED_FILE}"))



def close_parent(failure: BaseException | None) -> str | None:
    """Close this process's open parent run (if any) as `failure` ended the command; then close
    its children that a parallel launcher's workers left RUNNING when they were stopped. The
    closed parent's id, None when none was open."""
    global _parent
    if _parent is None:
        return None
    (stack, parent), _parent = _parent, None
    if failure is None:
        stack.close()
        return parent.id
    interrupted = isinstance(failure, (KeyboardInterrupt, SystemExit))
    try:
        stack.__exit__(type(failure), failure, failure.__traceback__)  # raises Interrupted(parent) on Ctrl-C
    finally:
        close_orphans(parent.store, parent.id, "interrupted: the sweep stopped" if interrupted
                      else f"the sweep failed: {first_line(failure)}")
    return parent.id


def close_orphans(store: Store, parent_id: str, reason: str, wait_s: float = 10.0) -> None:
    """Mark KILLED the RUNNING children of `parent_id` whose process has ended (waiting up to
    `wait_s` for workers that are still shutting down)."""
    from grubench.harness.provenance import owner_alive

    deadline = time.monotonic() + wait_s
    while True:
        running = store.client.search_runs([store.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' "
                                           "and attributes.status = 'RUNNING'")
        alive = [run for run in running if owner_alive(run.data.tags)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for run in running:
        if not owner_alive(run.data.tags):
            child = store.run(run.info.run_id)
            child.set_tags({"error": reason})
            child.set_status("KILLED")


def covering_jobs(overrides: list[str]) -> list[list[str]]:
    """Jobs of a basic sweep in which every swept value appears at least once, as few as that
    takes: `a=1,2,3 b=4,5` -> [[a=1, b=4], [a=2, b=5], [a=3, b=4]] (not all 6 combinations: a
    bad value is bad in any job, and composing a job costs about 0.1 s)."""
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    choices = []
    for override in parser.parse_overrides(list(overrides)):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([f"{key}={override.get_value_element_as_str()}"])
    width = max((len(values) for values in choices), default=1)
    return [[values[i % len(values)] for values in choices] for i in range(width)]


def check_jobs(config: DictConfig) -> None:
    """Compose and check the sweep's jobs (`covering_jobs`) before it opens anything: a bad value stops
    the sweep with its one line, before a parent run, a store or a sweep folder exists. The jobs
    are those Hydra's basic sweeper makes: `hydra.sweeper.params` (study presets), then the
    command line."""
    from grubench.config import check, hydra_error_line

    loader = GlobalHydra.instance().config_loader()
    from grubench.harness.study import as_written

    params = [f"{key}={value}" for key, value in as_written(config.hydra.sweeper.get("params")).items()]
    try:
        jobs = covering_jobs([*params, *config.hydra.overrides.task])
        for overrides in jobs:
            job = loader.load_sweep_config(config, overrides)
            with read_write(job), open_dict(job):
                job.pop("hydra")  # Hydra's node holds per-job values (hydra.job.num) not set yet
            check(job)
    except HydraException as error:  # Hydra turns a callback's exception into a warning: say it here
        raise ConfigError(hydra_error_line(error, sweep=True)) from error


class MultirunParent(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet(bool(config.get("verbose", False)))  # before MLflow loads: the parent's store is made here
        if searching(config) or sweeper(config).startswith(STUDY_SWEEPER):
            return  # they open their parent after their own checks
        try:
            check_jobs(config)  # before MLflow loads: a refused value answers at once
            open_parent(config)
        except GrubenchError as error:
            raise Refused(error) from error

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if searching(config):
            return
        from grubench.harness.store import Store, resolve_uri

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs, failures = failed_jobs(sweep_dir)
        store = Store.open(resolve_uri(config.tracking.uri), config.tracking.experiment)
        parent = store.run(read_parent_id(sweep_dir))
        parent.set_tags({"jobs/total": len(jobs), "jobs/failed": len(failures)})
        if failures:
            failed = SweepFailed(f"{len(failures)} of {len(jobs)} jobs failed, first: job {failures[0].parent.name}: "
                                 f"{failures[0].read_text().strip()}")
            close_parent(failed)
            raise Refused(failed)
        close_parent(None)
        print(f"sweep finished: {len(jobs)} jobs, parent run {parent.id}\n{browse_jobs(store, parent.id)}")


def open_parent(config: DictConfig) -> None:
    """Open the sweep's parent run (creating the store and the experiment, once, before any job)
    and write its id into the sweep folder, where every job reads it."""
    from grubench.harness import browse, devices
    from grubench.harness.runs import tracked_run
    from grubench.harness.store import Store, resolve_uri

    devices.check_sweep_devices(config)
    store = Store.open(resolve_uri(config.tracking.uri), config.tracking.experiment)
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    for stale in sweep_dir.glob(f"*/{FAILED_FILE}"):  # left by an earlier sweep in the same folder
        stale.unlink()
    overrides = " ".join(config.hydra.overrides.task)
    global _parent
    stack = ExitStack()
    name = f"sweep {' '.join(browse.naming(config.hydra.overrides.task))}".strip()
    parent = stack.enter_context(tracked_run(store, name, {
        "sweep": "parent", "overrides": overrides, "claims": ",".join(config.get("claims") or []),
        "sweep_dir": str(sweep_dir.resolve())}))
    _parent = (stack, parent)
    (sweep_dir / PARENT_ID_FILE).write_text(parent.id)


def browse_jobs(store, parent_id: str) -> str:
    """How to see the sweep's jobs: the runs-table view of their task metric (harness.browse)."""
    from grubench.harness import browse

    jobs = store.client.search_runs([store.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1)
    tags = jobs[0].data.tags if jobs else {}
    if "task/metric" not in tags:
        return f"  browse: {store.browse_hint()}"
    return browse.browse_lines(store, f"test/{tags['task/metric']}", tags.get("task/metric_mode", "min"))
