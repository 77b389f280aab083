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
have ended, counting those of earlier sessions. A trial that is stopped (Ctrl-C, SIGTERM) is
marked FAIL and not counted, and its values are queued to run first (a trial `retry_of` it).

Two kinds of storage:

  SQLite    one search process per study, held by a file lock beside the storage; a trial
            RUNNING when a search starts belongs to one that died, and is treated as stopped.
            The sampler is seeded with `seed` plus the trials the study already has, so a
            resumed search draws new points rather than repeating its first ones.
  any other (PostgreSQL: `postgresql+psycopg://...`) shared: any number of search processes, on
            any machines, work on the study at once. Each records a heartbeat for the trials it
            runs (every `heartbeat_interval` s); a trial whose heartbeat stops (its worker died)
            is failed by another worker after twice that and queued once more (Optuna's
            RetryHeartbeatStaleTrialCallback). Workers stop asking at `n_trials`, and a trial
            asked in the same instant past it is told FAIL unrun (user attr `surplus`), so that
            exactly `n_trials` trials count. The sampler is not seeded: workers draw in the
            order they finish, which no seed repeats.

MLflow: every trial is a child run of the search's parent run. With SQLite, a search started
again in its sweep folder reopens the same parent; with a shared storage, the worker that creates
the study opens the parent and every worker finds it in the study (user attr
`mlflow_parent_run_ids`, the last). After each round the parent carries the best trial so far:
tags `best/value`, `best/trial`, `best/params/<name>`, metrics `search/value` and `search/best`
per trial; `<sweep folder>/best_trial.yaml` holds it too, with the overrides that rerun it.
"""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

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
from grubench.errors import ConfigError, SweepFailed, TrackingError, first_line
from grubench.harness import devices
from grubench.harness.browse import naming
from grubench.harness.provenance import environment_tags
from grubench.harness.quiet import redact
from grubench.harness.runs import close, tracked_run
from grubench.harness.store import Run, Store, check_store, resolve_uri, sqlite_path
from grubench.harness.sweep import (
    BEST_FILE,
    PARENT_ID_FILE,
    failed_jobs,
    read_parent_id,
)

RETRY_OF = "retry_of"        # user attr of a trial that runs a stopped trial's values again
SURPLUS = "surplus"          # user attr of a trial asked past n_trials by a worker of a shared study
PARENTS = "mlflow_parent_run_ids"   # study user attr: the search's MLflow parent runs, the last one current
STALE_RETRIES = 1            # a trial whose worker died runs once more
PARENT_WAIT_S = 120          # how long a worker of a shared study waits for the study's creator to open the parent
ENDED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


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


def counting(trials: list) -> list:
    """The trials that count towards n_trials: all but those that run again as another trial
    (stopped ones, `retry_of`; dead workers' ones, Optuna's retry history) and surplus ones."""
    again = set()
    for trial in trials:
        if RETRY_OF in trial.user_attrs:
            again.add(trial.user_attrs[RETRY_OF])
        again.update(optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial))
    return [t for t in trials if t.number not in again and not t.user_attrs.get(SURPLUS)]


def counted(study: optuna.Study) -> int:
    """Trials that ended and count towards n_trials."""
    return sum(t.state in ENDED for t in counting(study.get_trials(deepcopy=False)))


def taken(study: optuna.Study) -> int:
    """Trials that ended or run and count towards n_trials: those a worker need not ask for again."""
    return sum(t.state in (*ENDED, TrialState.RUNNING) for t in counting(study.get_trials(deepcopy=False)))


def surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether `trial`, just asked, comes after n_trials that count (asked by workers at the same
    moment): trials are numbered in the order they were made, so the first n_trials stand."""
    return sum(t.number < trial.number for t in counting(study.get_trials(deepcopy=False))) >= n_trials


def interrupt(study: optuna.Study, trials: list) -> None:
    """Record `trials` (RUNNING) as FAIL, and queue their values to run again first."""
    for trial in trials:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Trials a dead search left RUNNING, recorded as interrupted (one search runs a SQLite study
    at a time, so a trial RUNNING when a search starts belongs to one that died); their numbers."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    interrupt(study, stale)
    return [t.number for t in stale]


@contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, study: optuna.Study, trials: list) -> Iterator[None]:
    """Record the heartbeat of `trials` now and every heartbeat interval while they run, as
    Optuna's own optimize loop does for its trials: when this process dies, the beats stop, and
    another worker fails the trials once the grace period has passed and queues them again."""
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    ids = [storage.get_trial_id_from_study_id_trial_number(study_id, t.number) for t in trials]
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - the database away for a moment: the next beat tries again
                    pass

    for trial_id in ids:
        storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def shared_parent(store: Store, study: optuna.Study, created: bool, name: str, tags: dict) -> Iterator[Run]:
    """The one parent run of a shared study's trials, whichever worker runs them. The worker that
    created the study opens it and names it in the study; the others wait for that and use it
    (reopened when an earlier session had closed it). A worker that ends with the study done
    closes it FINISHED (FAILED when no trial completed); one that is stopped or fails leaves it
    to the others, and to `reap` when its owner died."""
    if created:
        parent = store.create_run(name, {**environment_tags(), **tags})
        study.set_user_attr(PARENTS, [parent.id])
    else:
        parent = store.run(wait_for_parent(store, study))
        info = parent.info()
        if info.info.status != "RUNNING":
            if "error" in info.data.tags:
                parent.delete_tag("error")
            env = environment_tags()
            parent.set_tags({key: env[key] for key in ("host", "pid", "pid_start")})
            parent.set_status("RUNNING")
    try:
        yield parent
    except SweepFailed as failure:
        close(parent, failure, [])
        raise
    if "error" in parent.info().data.tags:  # a reap's, when the worker that opened it died: the study is done
        parent.delete_tag("error")
    close(parent, None, [])


def wait_for_parent(store: Store, study: optuna.Study) -> str:
    """The id of the shared study's parent run, once its creator has named it; TrackingError if
    that takes longer than PARENT_WAIT_S or the run is not in this store."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while not (parents := study.user_attrs.get(PARENTS)):
        if time.monotonic() > deadline:
            raise TrackingError(f"study {study.study_name}: no worker named its MLflow parent run within "
                                f"{PARENT_WAIT_S} s (its first worker died?); start the search again")
        time.sleep(0.5)
    try:
        store.run(parents[-1])
    except Exception as error:  # noqa: BLE001 - deleted, or in another store
        raise TrackingError(f"study {study.study_name}: its MLflow parent run {parents[-1]} is not in "
                            f"{store.uri}: give tracking.uri= the store of its runs, or choose another "
                            "hydra.sweeper.study_name") from error
    return parents[-1]


class OptunaSweeper(Sweeper):
    """See the module docstring; Hydra builds it from `conf/hydra/sweeper/grubench_optuna.yaml`."""

    def __init__(self, params: Mapping[str, Any], n_trials: int, n_jobs: int, direction: str | None,
                 study_name: str, storage: str | None, seed: int, sampler: Callable[..., optuna.samplers.BaseSampler],
                 heartbeat_interval: int = 60):
        self.params = {str(name): dict(spec) for name, spec in (params or {}).items()}
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.direction, self.study_name, self.storage = direction, str(study_name), storage
        self.seed, self.sampler = int(seed), sampler
        self.heartbeat_interval = int(heartbeat_interval)
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        with warnings.catch_warnings():
            # Optuna marks its heartbeat and the retry of a dead worker's trial experimental, and
            # expects heartbeats from its own optimize loop, not from ask and tell: both are meant here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            if not self.config.get("verbose"):
                optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ...": the sweep says so
            self.search(arguments)

    def search(self, arguments: list[str]) -> None:
        uri = resolve_uri(self.config.tracking.uri)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        # every refusal comes before any run is opened or reopened, the search's own first
        devices.check_sweep_devices(self.config)
        space, fixed, metric, direction = self.prepare(arguments)
        check_store(uri)
        url = self.storage_url(uri)
        shared = not url.startswith("sqlite")
        lock = nullcontext() if shared else self.lock_study(url)
        storage = self.open_storage(url, shared)
        study, created = self.open_study(storage, space, direction, shared)
        store = Store.open(uri, self.config.tracking.experiment)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        overrides = " ".join(self.config.hydra.overrides.task)
        name = f"search {' '.join(naming(self.config.hydra.overrides.task))}".strip()
        tags = {"sweep": "parent", "overrides": overrides, "claims": ",".join(self.config.get("claims") or []),
                "sweep_dir": str(sweep_dir.resolve()), "search/study": self.study_name, "search/metric": metric,
                "search/direction": direction, "search/n_trials": self.n_trials}
        parent_run = shared_parent(store, study, created, name, tags) if shared else \
            tracked_run(store, name, tags, reopen=self.parent_to_reopen(store, sweep_dir))
        with lock, parent_run as parent:
            (sweep_dir / PARENT_ID_FILE).write_text(parent.id)
            parent.set_tags(tags)
            known = study.user_attrs.get(PARENTS, [])
            if parent.id not in known:
                study.set_user_attr(PARENTS, [*known, parent.id])
            print(f"search {self.study_name}: {counted(study)} of {self.n_trials} trials done; {direction} "
                  f"{metric}; study in {redact(url)}{' (shared: any number of workers)' if shared else ''}",
                  flush=True)
            self.run_trials(study, storage, space, fixed, parent, sweep_dir, metric)
        print(f"search finished: best trial in {sweep_dir / BEST_FILE}\n  browse: {store.browse_hint()}")

    def run_trials(self, study: optuna.Study, storage: optuna.storages.RDBStorage, space: dict, fixed: list[str],
                   parent: Run, sweep_dir: Path, metric: str) -> None:
        """Ask, launch and tell until `n_trials` trials have ended; SweepFailed if none completed.
        With a shared storage, a worker that finds every trial taken waits while others still run
        trials: one of theirs may die and need running again."""
        while True:
            optuna.storages.fail_stale_trials(study)  # a shared study's trials whose worker died: queued again
            remaining = self.n_trials - taken(study)
            if remaining <= 0:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    break
                time.sleep(min(self.heartbeat_interval, 5))
                continue
            trials = []
            for _ in range(min(self.n_jobs, remaining)):
                trial = study.ask(space)
                if surplus(study, trial, self.n_trials):
                    trial.set_user_attr(SURPLUS, True)
                    study.tell(trial, state=TrialState.FAIL)
                    break
                trials.append(trial)
            if not trials:
                continue
            batch = [[*fixed, *(override(name, trial.params[name]) for name in space)] for trial in trials]
            self.validate_batch_is_legal(batch)
            try:
                with heartbeat(storage, study, trials):
                    returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            except BaseException:  # Ctrl-C, SIGTERM, a launcher error: the trials are tried again on resume
                interrupt(study, trials)
                raise
            for trial, job in zip(trials, returns):
                value = job.return_value if job.status == JobStatus.COMPLETED else None
                # skip_if_finished: a trial another worker took for dead (this one stalled past the grace period)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    study.tell(trial, float(value), skip_if_finished=True)
                else:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            self.record_best(study, parent, sweep_dir, metric, fixed, trials)
        jobs, failures = failed_jobs(sweep_dir)
        parent.set_tags({"jobs/total": len(jobs), "jobs/failed": len(failures)})
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise SweepFailed(f"search {self.study_name}: no trial completed ({len(failures)} of {len(jobs)} "
                                   "jobs failed; their runs say why)")
        if failures:
            print(f"search: {len(failures)} of {len(jobs)} trials failed (their runs say why)")

    def lock_study(self, storage: str) -> FileLock:
        """A lock held for the whole search on a SQLite storage: one search runs such a study at a
        time, so a trial RUNNING when a search starts belongs to one that died. The lock file sits
        beside the storage (in the sweep folder's parent for an in-memory one)."""
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

    def open_storage(self, url: str, shared: bool) -> optuna.storages.RDBStorage:
        """The Optuna storage at `url`; a shared one with heartbeats and one retry of a dead
        worker's trial. TrackingError in one line when it cannot be opened (PostgreSQL down, say)."""
        from sqlalchemy.exc import IntegrityError, ProgrammingError

        beats = {"heartbeat_interval": self.heartbeat_interval,
                 "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(STALE_RETRIES)}
        for _ in range(3):
            try:
                return optuna.storages.RDBStorage(url, **(beats if shared else {}))
            except (IntegrityError, ProgrammingError) as error:
                # workers starting at once on a new database race to create Optuna's tables
                # (PostgreSQL: duplicate key, or relation already exists): they are there the next time
                failure = error
                time.sleep(random.uniform(0.5, 1.5))
            except Exception as error:  # noqa: BLE001 - any other failure means the storage is unusable
                failure = error
                break
        raise TrackingError(f"cannot open the Optuna storage {redact(url)}: {redact(first_line(failure))}") from None

    def open_study(self, storage: optuna.storages.RDBStorage, space: dict[str, BaseDistribution], direction: str,
                   shared: bool) -> tuple[optuna.Study, bool]:
        """(the study `study_name`, created or loaded and checked against this search; whether this
        process created it). Of several workers starting a shared study at once, exactly one creates it."""
        described = json.dumps({name: optuna.distributions.distribution_to_json(d) for name, d in space.items()},
                               sort_keys=True)
        names = optuna.get_all_study_names(storage)
        previous = len(optuna.load_study(study_name=self.study_name, storage=storage).trials) \
            if self.study_name in names else 0
        sampler = self.sampler(seed=None if shared else self.seed + previous)
        try:
            study = optuna.create_study(study_name=self.study_name, storage=storage, direction=direction,
                                        sampler=sampler)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.load_study(study_name=self.study_name, storage=storage, sampler=sampler), False
        if not created:
            if study.direction.name.lower() != direction:
                raise ConfigError(f"study {self.study_name} was made to {study.direction.name.lower()}; "
                                  "choose another hydra.sweeper.study_name")
            if study.user_attrs.get("search_space", described) != described:
                raise ConfigError(f"study {self.study_name} searched another space; choose another "
                                  "hydra.sweeper.study_name, or give its space again")
            retried = [] if shared else recover_interrupted(study)
            if retried:
                print(f"search {self.study_name}: trials {retried} were interrupted; their values run again first")
        study.set_user_attr("search_space", described)
        return study, created

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
