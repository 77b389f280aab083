"""One training run, from a composed config to a closed MLflow run.

    check config -> build data set, model, optimiser (bad values stop here, before any run)
      -> open the MLflow run (params, tags, config artifacts)
      -> set up data -> Trainer.fit -> Trainer.test on the best checkpoint (test_weights=last: the final weights)
      -> record speed, memory, precision, checkpoint, job log -> close the run

The run ends FINISHED, FAILED (error tag and traceback artifact) or KILLED (Ctrl-C, SIGTERM).
`resume=RUN_ID` reopens a run that died and trains on from its last checkpoint (resume.py). In a
multi-device run only rank 0 does the MLflow part; the other ranks only train (devices.py).
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

from grubench.checks import check_accelerator
from grubench.config import build, check, flatten
from grubench.data.base import SequenceDataModule
from grubench.errors import ConfigError, Diverged, RunFailed, first_line
from grubench.gradflow.callback import GradientFlow
from grubench.harness import allocator, browse, checkpointing, devices, guards, quiet
from grubench.harness import resume as resuming
from grubench.harness.callbacks import FiniteLoss, SolveStep, Throughput
from grubench.harness.logger import RunLogger
from grubench.harness.progress import progress_callback
from grubench.harness.runs import tracked_run
from grubench.harness.store import Run, Store, check_store, resolve_uri, sqlite_path
from grubench.harness.sweep import multirun, parent_run_id
from grubench.task import SequenceTask

log = logging.getLogger("grubench")


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def output_dir() -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="grubench-"))


def study_name() -> str:
    """The experiment preset the run comes from (`+experiment=NAME`), "" without one: the
    report keeps each study's runs apart from runs made with other settings."""
    if not HydraConfig.initialized():
        return ""
    return str(HydraConfig.get().runtime.choices.get("experiment") or "")


@dataclass
class Job:
    """Everything one run needs, built (and so checked) before the run opens."""

    datamodule: SequenceDataModule
    task: SequenceTask
    trainer: pl.Trainer
    checkpoint: ModelCheckpoint
    throughput: Throughput
    folder: Path
    resume_point: checkpointing.ResumePoint


def build_job(cfg: DictConfig, checkpoint_dir: Path | None = None) -> Job:
    """Build data set, model, optimiser and trainer from a checked config (`config.check`);
    ConfigError if any is bad."""
    if cfg.get("threads") is not None:
        torch.set_num_threads(cfg.threads)
    allocator.keep_freed_memory()
    if multirun():
        devices.check_sweep_devices(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.dataset, "dataset")
    make_data(cfg, datamodule)
    if cfg.gradient_flow:
        check_gradient_flow(cfg, datamodule)
    spec = datamodule.spec
    guards.check_model_fits(cfg, parameter_count(cfg, spec), cuda=uses_cuda(cfg.trainer))
    task = SequenceTask(cfg.model, cfg.optim, spec)
    build(cfg.optim, "optim", params=task.model.parameters())  # a bad optimiser setting fails here, not in fit
    folder = output_dir()
    # Without a validation set (mnist1d with val_size=0, the paper's protocol) nothing is
    # monitored: the checkpoint is the latest, and Lightning runs no validation loop.
    validating = datamodule.split_sizes()["val"] > 0
    monitor = f"val/{spec.metric}" if validating else None
    checkpoint_dir = checkpoint_dir or folder / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=monitor,
                                 mode=spec.metric_mode, save_top_k=1)
    resume_point = checkpointing.ResumePoint(checkpoint_dir)  # last.ckpt
    throughput = Throughput()
    callbacks = [resume_point, checkpoint, throughput, FiniteLoss(),
                 SolveStep(spec.name, spec.metric, spec.chance.get(spec.metric, math.nan))]
    if cfg.gradient_flow:
        callbacks.append(GradientFlow(steps=list(cfg.gradient_flow)))
    progress_bar = False
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(progress_callback(monitor, spec.metric_mode))
        progress_bar = isinstance(callbacks[-1], ProgressBar)
    stopping = cfg.early_stopping
    if stopping.patience is not None or stopping.get("stopping_threshold") is not None:
        if not validating:
            raise ConfigError("early_stopping: stops on the validation metric, and this data set has no "
                              "validation set (dataset.val_size=0); set early_stopping.patience and "
                              "early_stopping.stopping_threshold to null")
        # Lightning's own rule; without a patience only the threshold stops the run
        callbacks.append(EarlyStopping(monitor=monitor, mode=spec.metric_mode, patience=stopping.patience or sys.maxsize,
                                       stopping_threshold=stopping.get("stopping_threshold")))
    # The MLflow logger joins when the run opens (`run_job`): building comes first, so that a bad
    # trainer setting stops the command before any run exists.
    check_accelerator(cfg.trainer)
    no_validation = {} if validating else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    trainer = build(cfg.trainer, "trainer", logger=False, callbacks=callbacks, default_root_dir=str(folder),
                    plugins=[checkpointing.AtomicCheckpointIO()], enable_progress_bar=progress_bar, **no_validation)
    return Job(datamodule, task, trainer, checkpoint, throughput, folder, resume_point)


def make_data(cfg: DictConfig, datamodule: SequenceDataModule) -> None:
    """Make the data set's splits before any run opens: data that cannot be made is refused."""
    guards.check_data_fits(cfg, datamodule.planned_bytes())
    try:
        datamodule.setup()
    except (MemoryError, RuntimeError, ValueError) as failure:
        if guards.out_of_memory(failure):
            raise ConfigError(guards.out_of_memory_message(cfg, "making the data")) from failure
        raise ConfigError(f"bad dataset config: {first_line(failure)}") from failure


def check_gradient_flow(cfg: DictConfig, datamodule: SequenceDataModule) -> None:
    """The gradient flow through time is measured on one direction over sequences of one length:
    refuse the others before any run opens."""
    if cfg.model.get("bidirectional"):
        raise ConfigError(f"gradient_flow={list(cfg.gradient_flow)}: measured through time for one direction only; "
                          "set model.bidirectional=false or gradient_flow=[]")
    if datamodule.unequal_lengths():
        raise ConfigError(f"gradient_flow={list(cfg.gradient_flow)}: measured on sequences of one length, and "
                          f"dataset {datamodule.spec.name}'s differ; set gradient_flow=[]")


def parameter_count(cfg: DictConfig, spec) -> int:
    """The model's parameters, counted on a copy built on the meta device (no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build(cfg.model, "model", task=spec).parameters())


def uses_cuda(trainer: DictConfig) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def build_checked_job(cfg: DictConfig, checkpoint_dir: Path | None = None) -> Job:
    """`build_job`, a model too large for memory reported as the setting to lower."""
    try:
        return build_job(cfg, checkpoint_dir)
    except RuntimeError as failure:
        if guards.out_of_memory(failure):
            raise ConfigError(guards.out_of_memory_message(cfg, "building the model")) from failure
        raise


def train(cfg: DictConfig) -> float | None:
    """Train and test one model; return the best validation score (for sweepers).

    `cfg` has passed `config.check` (the entry point checks it once, before torch loads)."""
    if not cfg.get("verbose"):
        quiet.plain_warnings()  # Lightning, imported by now, set a format of its own
    uri = resolve_uri(cfg.tracking.uri)
    check_store(uri)
    if not devices.rank_zero():
        return train_beside_rank_zero()
    overrides = task_overrides()
    if cfg.get("resume"):
        return train_resumed(cfg, uri, overrides)
    job = build_checked_job(cfg)
    store = Store.open(uri, cfg.tracking.experiment)
    spec = job.datamodule.spec
    tags = {
        "model": job.task.model.name,
        "dataset": spec.name,
        "task/metric": spec.metric,
        "task/metric_mode": spec.metric_mode,
        "task/seq_len": spec.seq_len,
        "task/chance": browse.rounded(spec.chance.get(spec.metric, "")),
        "claims": ",".join(cfg.get("claims") or []),
        **{f"decides/{claim}": ";".join(named) for claim, named in (cfg.get("decides") or {}).items()},
        **({"arm": cfg.arm} if cfg.get("arm") else {}),
        "overrides": " ".join(overrides),
        "seed": cfg.seed,
        "study": study_name(),
        "checkpoint_dir": job.resume_point.path.parent.resolve(),
    }
    parent = parent_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
        tags["sweep/job"] = HydraConfig.get().job.num
    name = browse.run_name(cfg.get("run_name"), job.task.model.name, spec.name, cfg.seed, overrides)
    return run_job(cfg, store, job, overrides, browse.unique_name(store, name), tags)


def train_resumed(cfg: DictConfig, uri: str, overrides: list[str]) -> float | None:
    """Reopen the run `cfg.resume` names and train on from its last checkpoint (resume.py)."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise ConfigError(f"resume={cfg.resume}: no MLflow store at {path}; give tracking.uri= the store the run is in")
    store = Store(uri, MlflowClient(uri), experiment_id="")  # a resumed run keeps its experiment: none is made
    resumed = resuming.find(cfg, store, overrides)
    check(resumed.config)  # the config the run recorded, as this version of grubench reads it
    store.experiment_id = store.client.get_run(resumed.run_id).info.experiment_id
    job = build_checked_job(resumed.config, resumed.checkpoint_dir)
    return run_job(resumed.config, store, job, overrides, reopen=resumed)


def train_beside_rank_zero() -> float | None:
    """A process of rank > 0 in a multi-device run: trains beside rank 0, on the config rank 0
    wrote into the job folder they share (Lightning runs it there), and records nothing."""
    cfg = OmegaConf.load(output_dir() / "config.yaml")
    resume_from = cfg.get("resume")
    job = build_job(cfg, Path(resume_from).parent if resume_from else None)
    job.datamodule.setup()
    job.trainer.fit(job.task, datamodule=job.datamodule, ckpt_path=resume_from, weights_only=True)
    job.trainer.test(job.task, datamodule=job.datamodule, ckpt_path=weights_to_test(cfg, job), verbose=False,
                     weights_only=True)
    return None


def weights_to_test(cfg: DictConfig, job: Job) -> str | None:
    """"best" (the best validation checkpoint), or None: the final weights (test_weights=last, the
    papers' protocol, no selection)."""
    return "best" if job.checkpoint.best_model_path and cfg.get("test_weights", "best") == "best" else None


def run_job(cfg: DictConfig, store: Store, job: Job, overrides: list[str], name: str | None = None,
            tags: dict | None = None, reopen: resuming.Resumed | None = None) -> float | None:
    """Fit and test in a run opened for it (or reopened), closed FINISHED, FAILED or KILLED."""
    run: Run | None = None
    try:
        with tracked_run(store, name, tags or {}, reopen=reopen.run_id if reopen else None,
                         logs=job.folder.glob("*.log"), describe_error=partial(describe_failure, cfg)) as run:
            job.resume_point.run_id = run.id
            if reopen:
                resuming.reopen(run, reopen)
                log.info("MLflow run %s resumed from %s", run.id, reopen.checkpoint or "the start")
            else:
                log.info("MLflow run %s (%s) in %s", run.id, run.name, store.uri)
            job.trainer.loggers = [RunLogger(run, reopen.logged if reopen else frozenset())]
            return fit_and_test(cfg, run, job, overrides, resumed=reopen is not None)
    except Exception as failure:
        if run is None:
            raise
        error = describe_failure(cfg, failure) or first_line(failure)
        raise RunFailed(f"run {run.id} failed: {error} (traceback in the run's error.txt)") from failure


def describe_failure(cfg: DictConfig, failure: BaseException) -> str | None:
    """A clearer error line for failures the user fixes with one setting (out of memory, a
    diverged loss: the hint names the settings as this run had them)."""
    if isinstance(failure, Diverged):
        clip = cfg.trainer.get("gradient_clip_val")
        hint = f"lower optim.lr (now {cfg.optim.lr})"
        hint += f" or trainer.gradient_clip_val (now {clip})" if clip else ", or clip: trainer.gradient_clip_val=1.0"
        return f"Diverged: {str(failure).split(';')[0]}; {hint}"
    return guards.out_of_memory_message(cfg, "training") if guards.out_of_memory(failure) else None


def fit_and_test(cfg: DictConfig, run: Run, job: Job, overrides: list[str], resumed: bool = False) -> float | None:
    spec, folder = job.datamodule.spec, job.folder
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))  # also read by ranks > 0
    if not resumed:  # a resumed run recorded these when it first opened
        run.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
        for name in ("config.yaml", "overrides.yaml"):
            run.log_artifact(folder / name)
        run.log_metrics(job.task.model.parameter_counts())

    described = job.datamodule.describe()
    run.set_tags({f"data/{key}": value for key, value in described.items()})
    if not resumed:
        browse.log_dataset(run, spec.name, OmegaConf.to_container(cfg.dataset, resolve=True), described)
    job.trainer.fit(job.task, datamodule=job.datamodule, ckpt_path=cfg.get("resume"), weights_only=True)
    results = job.trainer.test(job.task, datamodule=job.datamodule, ckpt_path=weights_to_test(cfg, job), verbose=False,
                               weights_only=True)[0]

    run.set_tags({
        "precision/trainer": job.trainer.precision,
        "precision/recurrent_dtype": str(job.task.model.last_recurrent_dtype).replace("torch.", ""),
        "model/impl": str(job.task.model.last_recurrent_impl),
        "device/accelerator": str(job.trainer.strategy.root_device),
    })
    if cfg.tracking.log_checkpoint and job.checkpoint.best_model_path:
        run.log_artifact(Path(job.checkpoint.best_model_path), "checkpoints")

    test_key = f"test/{spec.metric}"
    score = results.get(test_key, math.nan)
    chance = spec.chance.get(spec.metric, math.nan)
    speed = job.throughput.summary.get("speed/train_samples_per_s", math.nan)
    summary = (f"{job.task.model.name} on {spec.name}: {test_key} = {score:.4f}, {versus_chance(score, chance, spec.metric_mode)}; "
               f"{speed:.0f} samples/s; run {run.name} ({run.id})")
    browse.describe(run, summary)
    # a sweep prints where to browse once, when it ends; its jobs don't repeat it
    hint = "" if multirun() else "\n" + browse.browse_lines(run.store, test_key, spec.metric_mode)
    print(summary + hint, flush=True)
    best = job.checkpoint.best_model_score
    return float(best) if best is not None else None


def versus_chance(score: float, chance: float, mode: str) -> str:
    """"better than chance (0.1667)", or "no better than chance (0.1667)" for a model that learned nothing."""
    if math.isnan(chance):
        return "no chance level known"
    better = score < chance if mode == "min" else score > chance
    return f"{'better' if better else 'NO better'} than chance ({chance:.4f})"
