"""A claims study as one anytime sweep: every preset of a scale, ordered, within a time budget.

    python -m grubench -m hydra/sweeper=study hydra.sweeper.scale=full hydra.sweeper.budget_s=360 \
        hydra/launcher=pack

`StudySweeper` (Hydra builds it from conf/hydra/sweeper/study.yaml) expands the sweep of every
preset `conf/experiment/<scale>/<name>.yaml` into jobs and launches them all as one sweep, in an
order that gives every claim its deciding settings first:

  1. by seed stage: first every setting with its first `first_seeds` seeds (two seeds are what
     the report needs to compare two models on a setting), then each further seed in turn;
  2. within a stage, the presets take turns, one setting (all its models) at a time, so that no
     claim waits for another claim's whole study;
  3. within a preset, settings in the order the preset lists its values (a preset puts its
     deciding values first: the longer lengths, the wider models), models innermost, so that
     the models of a setting are compared as soon as possible.

The presets' sweeps and every job's config come from Hydra's own composition (the config
loader the sweeper's setup receives), so a preset may share a base through its defaults list
(conf/experiment/<scale>/_base.yaml). Before launching it prints how many runs the study holds
and a rough estimate of their time, from each job's composed config (`Estimate`).
With `budget_s` it writes a deadline into the sweep folder; a job that starts after it trains
nothing and is recorded as left out (`budget.py`). When the sweep ends the settings left out
are written to `<sweep dir>/left_out.json`, tagged on the sweep's parent run (`study/*`) and
logged beside it as the artifact `left_out.json`, and the command prints them.

Arguments on the command line are given to every job and win over the presets' own sweeps
(e.g. `trainer.max_epochs=1 dataset.limit=64` runs the whole study at toy size).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from grubench.errors import ConfigError
from grubench.harness import budget

MODEL_KEY = "model"
SEED_KEY = "seed"
LEFT_OUT_FILE = "left_out.json"
PLAN_FILE = "study_plan.json"


@dataclass
class Job:
    """One run of the study: its preset, its settings (key -> value) and its seed."""

    preset: str
    claims: list[str]
    settings: dict[str, str]
    seed: str | None
    overrides: list[str] = field(default_factory=list)
    varied: list[str] = field(default_factory=list)   # the keys the preset sweeps over several values
    estimate_s: float = 0.0

    def setting(self) -> str:
        """The setting without the model and seed, as a short line (the keys that vary)."""
        return " ".join(f"{k}={v}" for k, v in self.settings.items() if k != MODEL_KEY and k in self.varied)

    def matches(self, setting: str) -> bool:
        """Whether this job has `setting` ("key=value")."""
        key, _, value = setting.partition("=")
        return str(self.settings.get(bare_key(key))) == value


def bare_key(key: str) -> str:
    return key.lstrip("+~")


def as_written(params: DictConfig | None) -> dict:
    """A sweep's params unresolved: a value may read what only a job has (its model)."""
    return OmegaConf.to_container(params, resolve=False) if params is not None else {}


def sweep_values(params: Mapping[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """{bare key: (the key as written, [values])} of a preset's `hydra.sweeper.params`, in order."""
    parser = OverridesParser.create()
    swept = {}
    for key, value in params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() \
            else [override.get_value_element_as_str()]
        swept[bare_key(str(key))] = (str(key), values)
    return swept


def plan(loader: ConfigLoader, config: DictConfig, scale: str, presets: Sequence[str], arguments: Sequence[str],
         first_seeds: int = 2) -> list[Job]:
    """Every job of the presets, in the study's order (see the module docstring). A preset's sweep
    is read from the config Hydra composes for `+experiment=<scale>/<name>` (`config`: the
    sweep's own, whose hydra.* overrides every compose keeps). The arguments are not part of
    that compose: one such as `model.hidden_size=8` composes only once a job has its model. A
    key that the arguments set is not swept: the arguments' value goes to every job."""
    given = {bare_key(o.get_key_element()) for o in OverridesParser.create().parse_overrides(list(arguments))}
    per_stage: dict[int, list[list[list[Job]]]] = {}
    for name in presets:
        preset = loader.load_sweep_config(config, [f"+experiment={scale}/{name}"])
        swept = {k: v for k, v in sweep_values(as_written(preset.hydra.sweeper.get("params"))).items() if k not in given}
        seeds = swept.pop(SEED_KEY, (SEED_KEY, [None]))[1]
        model = swept.pop(MODEL_KEY, None)
        keys = [*swept, *([MODEL_KEY] if model else [])]
        written = {k: v[0] for k, v in swept.items()} | ({MODEL_KEY: model[0]} if model else {})
        settings = list(itertools.product(*(swept[k][1] for k in swept)))
        claims = list(preset.get("claims") or [])
        stages = [seeds[:first_seeds]] + [[s] for s in seeds[first_seeds:]]
        for stage, stage_seeds in enumerate(stages):
            units = []
            for values in settings:
                for seed in stage_seeds:
                    unit = []
                    for model_name in (model[1] if model else [None]):
                        chosen = dict(zip(keys, [*values, *([model_name] if model else [])]))
                        overrides = [f"+experiment={scale}/{name}", *(f"{written[k]}={v}" for k, v in chosen.items())]
                        if seed is not None:
                            overrides.append(f"{SEED_KEY}={seed}")
                        unit.append(Job(name, claims, chosen, seed, [*overrides, *arguments],
                                        varied=[k for k in keys if k == MODEL_KEY or len(swept[k][1]) > 1]))
                    units.append(unit)
            per_stage.setdefault(stage, []).append(units)
    ordered = []
    for stage in sorted(per_stage):
        for turn in itertools.zip_longest(*per_stage[stage]):
            for unit in turn:
                ordered.extend(unit or [])
    return ordered


# Data modules whose config holds no training-set size or sequence length: both are known only
# once the data is loaded. By `_target_`: (examples before the config holds out its validation
# and test sets, time steps when read one value per step). Digits: scikit-learn's 1,797 8x8
# images; MNIST-1D: 4,000 generated training sequences of 40; the chorales: music21's 350
# distinct pieces, about 60 quarter-note steps each; MNIST: 60,000 training images of 28x28.
SOURCES = {
    "grubench.data.DigitsDataModule": (1797, 64),
    "grubench.data.MNIST1DDataModule": (4000, 40),
    "grubench.data.ChoralesDataModule": (350, 60),
    "grubench.data.SequentialMNISTDataModule": (60000, 784),
}
OTHER_SOURCE = (1000, 50)  # a data module of a config of one's own (--config-dir) that this table does not know
# The UCR/UEA problems by name (dataset=uea): training cases of the archive's split, longest length.
UEA_SOURCES = {"JapaneseVowels": (270, 29), "BasicMotions": (40, 100)}


def source(data: DictConfig) -> tuple[int, int]:
    """(examples, time steps) of a data set whose config holds neither."""
    if data._target_ == "grubench.data.UEADataModule":
        return UEA_SOURCES.get(data.get("name"), OTHER_SOURCE)
    return SOURCES.get(data._target_, OTHER_SOURCE)


def training_examples(data: DictConfig) -> int:
    """The training set's size: `train_size` where the data set's config holds one, else its
    source's examples (`max_pieces` of them at most) less what the config holds out (`val_size`,
    or the shares `val_fraction` and `test_fraction`); `limit` at most."""
    if "train_size" in data:
        examples = data.train_size
    else:
        examples = min(source(data)[0], data.get("max_pieces") or math.inf)
        examples -= data.get("val_size") or 0
        examples = round(examples * (1 - data.get("val_fraction", 0) - data.get("test_fraction", 0)))
    return min(examples, data.limit) if data.get("limit") else examples


def sequence_length(data: DictConfig) -> int:
    """Time steps per sequence: `seq_len` where the config holds one, else its source's (`steps:
    rows` reads a square image one row per step)."""
    if "seq_len" in data:
        return data.seq_len
    steps = source(data)[1]
    return math.isqrt(steps) if data.get("steps") == "rows" else steps


def training_steps(job: DictConfig) -> float:
    """The optimiser steps of a job that trains to the end (no early stop), as Lightning counts
    them: batches per epoch (`limit_train_batches`: a number of batches, or a share of the epoch)
    times max_epochs (-1: no limit), max_steps at most."""
    trainer = job.trainer
    batches = math.ceil(training_examples(job.dataset) / job.dataset.batch_size)
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, float):
        batches = int(batches * limit)
    elif isinstance(limit, int):
        batches = min(batches, limit)
    epochs = trainer.get("max_epochs")
    steps = batches * epochs if epochs is not None and epochs >= 0 else math.inf
    max_steps = trainer.get("max_steps")
    return min(steps, max_steps) if max_steps is not None and max_steps >= 0 else steps


def seconds_of(max_time: str | Mapping[str, int]) -> float:
    """Lightning's `max_time` (DD:HH:MM:SS, or a dict such as {hours: 1}) in seconds."""
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(part) for part in max_time.split(":"))
        max_time = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
    return timedelta(**max_time).total_seconds()


class Estimate:
    """A rough upper bound of a job's time, from the config Hydra composes for it: its training
    steps (`training_steps`: max_epochs, no early stop), trainer.max_time at most.

        job_overhead_s + steps x seq_len x us_per_timestep[device] x batch_size / 128
                       x (hidden_size / 128)^width_power[device] x model_factor[model] / 1e6

    us_per_timestep is one training step of a batch of 128 at width 128, per time step. The
    constants are the sweeper's `estimate` (conf/hydra/sweeper/study.yaml)."""

    def __init__(self, constants: Mapping[str, Any], device: str):
        self.constants, self.device = constants, device

    def seconds(self, job: DictConfig) -> float:
        c = self.constants
        per_step = (c["us_per_timestep"][self.device] * sequence_length(job.dataset) * job.dataset.batch_size / 128
                    * (job.model.hidden_size / 128) ** c["width_power"][self.device]
                    * c["model_factor"].get(job.model.name, c["model_factor"]["other"]))
        seconds = c["job_overhead_s"] + training_steps(job) * per_step / 1e6
        max_time = job.trainer.get("max_time")
        return min(seconds, seconds_of(max_time) + c["job_overhead_s"]) if max_time else seconds


def check_and_estimate(loader: ConfigLoader, config: DictConfig, jobs: Sequence[Job], estimate: Estimate) -> None:
    """Check every job's config as a run checks it (`config.check`: a bad value refuses the
    study before anything is made) and set its `estimate_s`, from the config Hydra composes for
    it, once per preset, setting and model: the seed changes neither, and one compose costs
    0.1-0.2 s."""
    from grubench.config import check

    seconds: dict[tuple, float] = {}
    for job in jobs:
        key = (job.preset, *job.settings.items())
        if key not in seconds:
            composed = loader.load_sweep_config(config, job.overrides)
            with read_write(composed), open_dict(composed):
                composed.pop("hydra")  # per-job values (hydra.job.num) not set yet
            check(composed)
            seconds[key] = estimate.seconds(composed)
        job.estimate_s = seconds[key]


class UntilDeadline(Sequence):
    """The jobs' overrides for a launcher: iterating stops at the deadline. Launchers (Hydra's
    basic one, joblib's) take jobs from the iterator as they start them, so once the deadline
    has passed no further job is handed out; those already handed out but not yet started
    leave themselves out (`budget.left_out_by_budget`)."""

    def __init__(self, items: list, deadline: float):
        self.items, self.deadline = items, deadline

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def __iter__(self):
        for item in self.items:
            if time.time() >= self.deadline:
                return
            yield item


def max_time(seconds: float) -> str:
    """Seconds as Lightning's `max_time` string, DD:HH:MM:SS."""
    seconds = int(seconds)
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def describe_time(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


class StudySweeper(Sweeper):
    """See the module docstring."""

    def __init__(self, scale: str, presets: Sequence[str], budget_s: float | None, first_seeds: int,
                 job_max_s: float | None, device: str, estimate: Mapping[str, Any], leave_out: Sequence[str] = ()):
        self.scale, self.presets = str(scale), [str(p) for p in presets]
        self.leave_out = [str(s) for s in leave_out or []]
        self.budget_s = float(budget_s) if budget_s is not None else None
        self.first_seeds, self.device = int(first_seeds), str(device)
        self.job_max_s = float(job_max_s) if job_max_s is not None else None
        self.estimate_cfg = OmegaConf.to_container(estimate) if isinstance(estimate, DictConfig) else dict(estimate)
        self.config: DictConfig | None = None
        self.loader: ConfigLoader | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.loader = config, hydra_context.config_loader
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def parallel_jobs(self) -> int:
        n_jobs = self.config.hydra.launcher.get("n_jobs", 1) if "n_jobs" in self.config.hydra.launcher else 1
        if n_jobs is None or int(n_jobs) < 1:
            import os

            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return int(n_jobs)

    def device_kind(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def sweep(self, arguments: list[str]) -> None:
        sweeps = [a for a in OverridesParser.create().parse_overrides(arguments) if a.is_sweep_override()]
        if sweeps:
            raise ConfigError(f"{' '.join(s.input_line for s in sweeps)}: a study sweeps its presets' own values; "
                              "give single values only")
        extra = [f"++trainer.max_time='{max_time(self.job_max_s)}'"] if self.job_max_s else []
        jobs = plan(self.loader, self.config, self.scale, self.presets, [*arguments, *extra], self.first_seeds)
        dropped = [j for j in jobs if any(j.matches(s) for s in self.leave_out)]
        jobs = [j for j in jobs if not any(j.matches(s) for s in self.leave_out)]
        check_and_estimate(self.loader, self.config, jobs, Estimate(self.estimate_cfg, self.device_kind()))
        from grubench.harness.sweep import open_parent

        open_parent(self.config)  # after every check: a refused study makes nothing
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self.print_plan(jobs)
        if dropped:
            print(f"study {self.scale}: {len(dropped)} runs left out as asked (leave_out: {' '.join(self.leave_out)})",
                  flush=True)
        (sweep_dir / PLAN_FILE).write_text(json.dumps(
            [{"job": i, "preset": j.preset, "claims": j.claims, "setting": j.setting(), "model": j.settings.get(MODEL_KEY),
              "seed": j.seed, "estimate_s": round(j.estimate_s, 1), "overrides": j.overrides}
             for i, j in enumerate(jobs)], indent=1))
        started = time.time()
        due = started + self.budget_s if self.budget_s is not None else math.inf
        if self.budget_s is not None:
            budget.write_deadline(sweep_dir, due)
        returns = self.launcher.launch(UntilDeadline([j.overrides for j in jobs], due), initial_job_idx=0)
        self.record_left_out(jobs, dropped, sweep_dir, time.time() - started)
        for job_return in returns:  # a job that raised (not a recorded run failure): raise it here
            job_return.return_value

    def print_plan(self, jobs: list[Job]) -> None:
        by_preset: dict[str, int] = {}
        for job in jobs:
            by_preset[job.preset] = by_preset.get(job.preset, 0) + 1
        total = sum(j.estimate_s for j in jobs)
        n = self.parallel_jobs()
        line = (f"study {self.scale}: {len(jobs)} runs ({', '.join(f'{p} {c}' for p, c in by_preset.items())}); "
                f"rough estimate {describe_time(total)} one at a time, {describe_time(total / n)} with {n} at once "
                f"on {self.device_kind()}")
        if self.budget_s is not None:
            fit = n * self.budget_s
            fitting = sum(1 for _ in itertools.takewhile(lambda c: c <= fit, itertools.accumulate(j.estimate_s for j in jobs)))
            line += f"; budget {self.budget_s:.0f} s: no job starts after it (about {fitting} runs fit)"
        print(line, flush=True)

    def record_left_out(self, jobs: list[Job], dropped: list[Job], sweep_dir: Path, elapsed_s: float) -> None:
        """Write, tag and print the settings whose jobs started after the budget (or were left
        out as asked, `leave_out`)."""
        left = [(i, j) for i, j in enumerate(jobs)
                if budget.skipped(sweep_dir / str(i)) or not (sweep_dir / str(i)).is_dir()]
        settings: dict[tuple[str, str, str], list[str]] = {}
        for why, group in (("budget", [j for _, j in left]), ("asked", dropped)):
            for job in group:
                key = (job.preset, job.setting(), why)
                settings.setdefault(key, []).append(f"{job.settings.get(MODEL_KEY)}@{job.seed}")
        claims = {j.preset: j.claims for j in [*jobs, *dropped]}
        report = {
            "scale": self.scale, "runs": len(jobs) + len(dropped), "started": len(jobs) - len(left),
            "left_out": len(left) + len(dropped), "left_out_by_budget": len(left), "left_out_as_asked": len(dropped),
            "budget_s": self.budget_s, "elapsed_s": round(elapsed_s, 1),
            "settings": [{"preset": p, "claims": claims[p], "setting": s, "why": why, "models_at_seeds": ms}
                         for (p, s, why), ms in settings.items()],
            "jobs": [{"job": i, "overrides": j.overrides} for i, j in left],
        }
        path = sweep_dir / LEFT_OUT_FILE
        path.write_text(json.dumps(report, indent=1))
        self.tag_parent(sweep_dir, path, report)
        print(f"study {self.scale}: {report['started']} of {report['runs']} runs started in {elapsed_s:.0f} s; "
              f"{len(left)} left out by the budget, {len(dropped)} as asked" +
              (f", in {len(settings)} settings (see {path})" if settings else ""), flush=True)
        for (preset, setting, why), models in settings.items():
            print(f"  left out ({why}): {preset} {setting or '(its one setting)'}: {', '.join(models)}", flush=True)

    def tag_parent(self, sweep_dir: Path, path: Path, report: dict) -> None:
        from grubench.harness.store import Store, resolve_uri
        from grubench.harness.sweep import read_parent_id

        parent_id = read_parent_id(sweep_dir)
        if parent_id is None:
            return
        store = Store.open(resolve_uri(self.config.tracking.uri), self.config.tracking.experiment)
        parent = store.run(parent_id)
        lines = "; ".join(f"{s['preset']} {s['setting']} ({s['why']}): {','.join(s['models_at_seeds'])}"
                          for s in report["settings"])
        parent.set_tags({"study/scale": self.scale, "study/runs": report["runs"], "study/started": report["started"],
                         "study/left_out": report["left_out"], "study/budget_s": report["budget_s"],
                         "study/left_out_settings": lines or "none"})
        parent.log_artifact(path)
