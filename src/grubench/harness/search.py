"""Hyperparameter search with Optuna (ask and tell), as a Hydra sweeper: `hydra/sweeper=grubench_optuna`.

    python -m grubench -m +experiment=search_gru                    # the example search (conf/experiment)
    python -m grubench -m +experiment=search_gru hydra.sweeper.n_trials=40   # run on, to 40 trials

The search space is `hydra.sweeper.params`, one entry per override a trial sets:

    optim.lr:          {type: float, low: 1.0e-4, high: 1.0e-1, log: true}   # log-uniform
    model.hidden_size: {type: int, low: 16, high: 128, step: 16}
    dataset.batch_size: {type: categorical, choices: [32, 64, 128]}
    +model:            {type: categorical, choices: [gru, lstm]}           # a config group

Each round the sweeper asks Optuna for `n_jobs` trials, launches them as one batch of Hydra jobs
(in parallel under a parallel launcher), and tells Optuna what each returned: the best validation
score of its run (`val/<the task's metric>`), or FAIL when the job failed or returned no score.
The search goes on past failed trials.

The study lives in an Optuna storage, by default `optuna.db` beside the MLflow SQLite store,
under `study_name`: starting a search whose study exists continues it until `n_trials` trials
have ended, counting those of earlier sessions. Trials left RUNNING by a search that died are
marked FAIL ("interrupted") and not counted, and their values are tried again first. The
sampler is seeded with `seed` plus the number of trials the study already has, so a resumed
search draws new points rather than repeating its first ones.

MLflow: every trial is a child run of the sweep's parent run (sweep.py); a search started again
in its sweep folder reopens the same parent. After each round the parent carries the best trial
so far: tags `best/value`, `best/trial`, `best/params/<name>`, metrics `search/value` and
`search/best` per trial; `<sweep folder>/best_trial.yaml` holds it too, with the overrides that
rerun it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from filelock import FileLock, Timeout
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from grubench.config import build
from grubench.errors import ConfigError, SweepFailed
from grubench.harness import devices
from grubench.harness.runs import tracked_run
from grubench.harness.store import Run, Store, check_store, resolve_uri, sqlite_path
from grubench.harness.sweep import (
    BEST_FILE,
    PARENT_ID_FILE,
    failed_jobs,
    read_parent_id,
)

INTERRUPTED = "interrupted"



KEYS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}


def distribution(name: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """The Optuna distribution a search-space entry describes; ConfigError naming the entry if bad."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    where = f"hydra.sweeper.params.{name}"
    if kind not in KEYS:
        raise ConfigError(f"{where}: type must be float, int or categorical, got {kind!r}")
    if set(spec) - KEYS[kind]:
        raise ConfigError(f"{where}: unknown keys {sorted(set(spec) - KEYS[kind])} for type {kind}")
    needed = {"low", "high"} if kind != "categorical" else {"choices"}
    if needed - set(spec):
        raise ConfigError(f"{where}: {kind} needs {' and '.join(sorted(needed - set(spec)))}")
    try:
        if kind == "float":
            return FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)),
                                     step=spec.get("step"))
        if kind == "int":
            return IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)),
                                   step=int(spec.get("step", 1)))
        return CategoricalDistribution(list(spec["choices"]))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def override(name: str, value: Any) -> str:
    """`name=value` as Hydra reads it back (strings with odd characters quoted)."""
    if isinstance(value, str) and not value.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return f"{name}='{value}'"
    return f"{name}={value}"


def counted(study: optuna.Study) -> int:
    """Trials that ended and count towards n_trials; interrupted ones do not (they are tried again)."""
    ended = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    interrupted = set(study.user_attrs.get(INTERRUPTED, []))
    return sum(t.state in ended and t.number not in interrupted for t in study.get_trials(deepcopy=False))


def interrupt(study: optuna.Study, trials: list) -> None:
    """Record `trials` (RUNNING) as failed by interruption, and queue their values to run again first."""
    study.set_user_attr(INTERRUPTED, [*study.user_attrs.get(INTERRUPTED, []), *(t.number for t in trials)])
    for trial in trials:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Trials a dead search left RUNNING, recorded as interrupted (one search runs a study at a
    time, so a trial RUNNING when a search starts belongs to one that died); their numbers."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    interrupt(study, stale)
    return [t.number for t in stale]


class OptunaSweeper(Sweeper):
    """See the module docstring; Hydra builds it from `conf/hydra/sweeper/grubench_optuna.yaml`."""

    def __init__(self, params: Mapping[str, Any], n_trials: int, n_jobs: int, direction: str | None,
                 study_name: str, storage: str | None, seed: int, sampler: Callable[..., optuna.samplers.BaseSampler]):
        self.params = {str(name): dict(spec) for name, spec in (params or {}).items()}
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.direction, self.study_name, self.storage = direction, str(study_name), storage
        self.seed, self.sampler = int(seed), sampler
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        uri = resolve_uri(self.config.tracking.uri)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        # every refusal comes before any run is opened or reopened, the search's own first
        devices.check_sweep_devices(self.config)
        space, fixed, metric, direction = self.prepare(arguments)
        check_store(uri)
        lock = self.lock_study(uri)
        study = self.open_study(uri, space, direction)
        store = Store.open(uri, self.config.tracking.experiment)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        overrides = " ".join(self.config.hydra.overrides.task)
        tags = {"sweep": "parent", "overrides": overrides, "claims": ",".join(self.config.get("claims") or []),
                "sweep_dir": str(sweep_dir.resolve()), "search/study": self.study_name, "search/metric": metric,
                "search/direction": direction, "search/n_trials": self.n_trials}
        with lock, tracked_run(store, f"search {overrides}".strip(), tags,
                               reopen=self.parent_to_reopen(store, sweep_dir)) as parent:
            (sweep_dir / PARENT_ID_FILE).write_text(parent.id)
            parent.set_tags(tags)
            known = study.user_attrs.get("mlflow_parent_run_ids", [])
            if parent.id not in known:
                study.set_user_attr("mlflow_parent_run_ids", [*known, parent.id])
            print(f"search {self.study_name}: {counted(study)} of {self.n_trials} trials done; {direction} "
                  f"{metric}; study in {self.storage_url(uri)}", flush=True)
            self.run_trials(study, space, fixed, parent, sweep_dir, metric)
        print(f"search finished: best trial in {sweep_dir / BEST_FILE}\n  browse: {store.browse_hint()}")

    def run_trials(self, study: optuna.Study, space: dict, fixed: list[str], parent: Run, sweep_dir: Path,
                   metric: str) -> None:
        """Ask, launch and tell until `n_trials` trials have ended; SweepFailed if none completed."""
        while (remaining := self.n_trials - counted(study)) > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            batch = [[*fixed, *(override(name, trial.params[name]) for name in space)] for trial in trials]
            self.validate_batch_is_legal(batch)
            try:
                returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            except BaseException:  # Ctrl-C, SIGTERM, a launcher error: the trials are tried again on resume
                interrupt(study, trials)
                raise
            for trial, job in zip(trials, returns):
                value = job.return_value if job.status == JobStatus.COMPLETED else None
                if isinstance(value, (int, float)) and math.isfinite(value):
                    study.tell(trial, float(value))
                else:
                    study.tell(trial, state=TrialState.FAIL)
            self.record_best(study, parent, sweep_dir, metric, fixed, trials)
        jobs, failures = failed_jobs(sweep_dir)
        parent.set_tags({"jobs/total": len(jobs), "jobs/failed": len(failures)})
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise SweepFailed(f"search {self.study_name}: no trial completed ({len(failures)} of {len(jobs)} "
                                   "jobs failed; their runs say why)")
        if failures:
            print(f"search: {len(failures)} of {len(jobs)} trials failed (their runs say why)")

    def lock_study(self, uri: str) -> FileLock:
        """A lock held for the whole search: one search runs a study at a time, so a trial RUNNING
        when a search starts belongs to one that died. The lock file sits beside a SQLite storage,
        or in the sweep folder's parent for another storage."""
        storage = self.storage_url(uri)
        where = Path(storage[len("sqlite:///"):]).parent if storage.startswith("sqlite:///") else \
            Path(self.config.hydra.sweep.dir).resolve().parent
        where.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(where / f"optuna-{self.study_name}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"study {self.study_name} is being searched by another command ({lock.lock_file}); "
                              "wait for it, or choose another hydra.sweeper.study_name") from None
        return lock

    @staticmethod
    def parent_to_reopen(store: Store, sweep_dir: Path) -> str | None:
        """The parent run of an earlier session of this search (same sweep folder), if the store has it."""
        existing = read_parent_id(sweep_dir)
        if existing is None:
            return None
        try:
            run = store.run(existing)
        except Exception:  # noqa: BLE001 - deleted, or in another store: the search gets a new parent
            return None
        if "error" in run.info().data.tags:
            run.delete_tag("error")
        return existing

    def prepare(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str], str, str]:
        """(search space, fixed overrides, metric, direction) from the config and the command line."""
        if not self.params:
            raise ConfigError("the search space is empty: set hydra.sweeper.params (docs/sweeps.md)")
        space = {name: distribution(name, spec) for name, spec in self.params.items()}
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed = []
        for parsed in parser.parse_overrides(arguments):
            if parsed.is_sweep_override():
                raise ConfigError(f"{parsed.input_line}: a search takes its choices from hydra.sweeper.params, "
                                  "not from comma lists on the command line")
            if parsed.get_key_element() in space:
                raise ConfigError(f"{parsed.input_line}: {parsed.get_key_element()} is in the search space")
            fixed.append(parsed.input_line)
        if any(name.lstrip("+~") == "dataset" for name in space):
            raise ConfigError("a search compares one validation metric: choose the dataset outside the search space")
        spec = build(self.config.dataset, "dataset").spec
        metric = f"val/{spec.metric}"
        wanted = {"max": "maximize", "min": "minimize"}[spec.metric_mode]
        direction = self.direction or wanted
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction must be minimize, maximize or null, got {direction!r}")
        if direction != wanted:
            print(f"grubench: note: {direction} {metric}, which is better when {'higher' if wanted == 'maximize' else 'lower'}",
                  file=sys.stderr)
        return space, fixed, metric, direction

    def storage_url(self, uri: str) -> str:
        if self.storage:
            return str(self.storage)
        path = sqlite_path(uri)
        if path is None:
            raise ConfigError(f"the MLflow store {uri} is a server: set hydra.sweeper.storage to an Optuna storage URL")
        return f"sqlite:///{path.parent / 'optuna.db'}"

    def open_study(self, uri: str, space: dict[str, BaseDistribution], direction: str) -> optuna.Study:
        """The study `study_name`, created, or loaded and checked against this search."""
        storage = optuna.storages.RDBStorage(self.storage_url(uri))
        described = json.dumps({name: optuna.distributions.distribution_to_json(d) for name, d in space.items()},
                               sort_keys=True)
        names = optuna.get_all_study_names(storage)
        previous = len(optuna.load_study(study_name=self.study_name, storage=storage).trials) \
            if self.study_name in names else 0
        study = optuna.create_study(study_name=self.study_name, storage=storage, direction=direction,
                                    sampler=self.sampler(seed=self.seed + previous), load_if_exists=True)
        if previous or self.study_name in names:
            if study.direction.name.lower() != direction:
                raise ConfigError(f"study {self.study_name} was made to {study.direction.name.lower()}; "
                                  "choose another hydra.sweeper.study_name")
            if study.user_attrs.get("search_space", described) != described:
                raise ConfigError(f"study {self.study_name} searched another space; choose another "
                                  "hydra.sweeper.study_name, or give its space again")
            retried = recover_interrupted(study)
            if retried:
                print(f"search {self.study_name}: trials {retried} were interrupted; their values run again first")
        study.set_user_attr("search_space", described)
        return study

    def record_best(self, study: optuna.Study, parent: Run, sweep_dir: Path, metric: str,
                    fixed: list[str], trials: list[optuna.trial.FrozenTrial]) -> None:
        """The best trial so far on the parent run and in best_trial.yaml; each trial's value as a metric."""
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not complete:
            return
        best = study.best_trial
        ended = study.get_trials(deepcopy=False)
        for trial in trials:
            if ended[trial.number].value is not None:
                parent.log_metrics({"search/value": ended[trial.number].value, "search/best": best.value},
                                   step=trial.number)
        parent.set_tags({"best/value": best.value, "best/trial": best.number,
                         **{f"best/params/{k.lstrip('+~')}": v for k, v in best.params.items()}})
        record = {"study": self.study_name, "metric": metric, "direction": study.direction.name.lower(),
                  "value": best.value, "trial": best.number, "params": best.params,
                  "overrides": [*fixed, *(override(k, v) for k, v in best.params.items())],
                  "trials": {"complete": len(complete), "counted": counted(study), "n_trials": self.n_trials}}
        (sweep_dir / BEST_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(record)))
