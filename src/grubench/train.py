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
import signal
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

from grubench import checkpointing, devices, guards, tracking
from grubench import resume as resuming
from grubench.callbacks import FiniteLoss, SolveStep, Throughput
from grubench.config import ConfigError, GrubenchError, build, check
from grubench.data.base import SequenceDataModule
from grubench.gradflow import GradientFlow
from grubench.models.sequence import SequenceModel
from grubench.sweep import read_parent_id
from grubench.task import SequenceTask

log = logging.getLogger("grubench")

# Redrawing the progress bar every step costs about 0.25 ms a step (python -m grubench.bench.overhead).
PROGRESS_REFRESH_STEPS = 20

# Keys of the Hydra overrides that already appear in a run name's first part.
NAMED_IN_RUN_NAME = ("model", "+model", "dataset")


class RunFailed(GrubenchError):
    """A run opened, then failed; it is recorded FAILED with the error."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C, so the run ends KILLED."""


@contextmanager
def sigterm_as_interrupt():
    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def output_dir() -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="grubench-"))


def run_name(cfg: DictConfig, model_name: str, dataset_name: str, overrides: list[str]) -> str:
    """`cfg.run_name`, or <model>-<dataset> followed by the overrides that set anything else."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    extra = [o for o in overrides if o.split("=", 1)[0] not in NAMED_IN_RUN_NAME]
    return "-".join([model_name, dataset_name, *extra])


def study_name() -> str:
    """The experiment preset the run comes from (`+experiment=NAME`), "" without one: the
    report keeps each study's runs apart from runs made with other settings."""
    if not HydraConfig.initialized():
        return ""
    return str(HydraConfig.get().runtime.choices.get("experiment") or "")


def multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN"


def parent_run_id() -> str | None:
    """The multirun's parent run, written into the sweep folder when the sweep started."""
    return read_parent_id(Path(HydraConfig.get().sweep.dir)) if multirun() else None


@dataclass
class Job:
    """Everything one run needs, built (and so checked) before the run opens."""

    datamodule: SequenceDataModule
    model: SequenceModel
    task: SequenceTask
    trainer: pl.Trainer
    logger: tracking.RunLogger
    checkpoint: ModelCheckpoint
    throughput: Throughput
    folder: Path
    resume_point: checkpointing.ResumePoint


def build_job(cfg: DictConfig, uri: str, checkpoint_dir: Path | None = None) -> Job:
    """Check the config and build data set, model, optimiser and trainer; ConfigError if any is bad."""
    check(cfg)
    if cfg.get("threads") is not None:
        torch.set_num_threads(cfg.threads)
    if multirun():
        devices.check_sweep_devices(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.dataset, "dataset")
    spec = datamodule.spec
    model = build(cfg.model, "model", task=spec)
    task = SequenceTask(model, build(cfg.optim, "optim", params=model.parameters()))
    folder = output_dir()
    monitor = f"val/{spec.metric}"
    checkpoint_dir = checkpoint_dir or folder / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=monitor,
                                 mode=spec.metric_mode, save_top_k=1)
    resume_point = checkpointing.ResumePoint(checkpoint_dir)  # last.ckpt
    throughput = Throughput()
    callbacks = [resume_point, checkpoint, throughput, FiniteLoss(),
                 SolveStep(spec.name, spec.metric, spec.chance.get(spec.metric, math.nan))]
    if cfg.gradient_flow:
        callbacks.append(GradientFlow())
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
    if cfg.early_stopping.patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=spec.metric_mode, patience=cfg.early_stopping.patience))
    logger = tracking.RunLogger(uri)
    trainer = build(cfg.trainer, "trainer", logger=logger, callbacks=callbacks, default_root_dir=str(folder),
                    plugins=[checkpointing.AtomicCheckpointIO()])
    return Job(datamodule, model, task, trainer, logger, checkpoint, throughput, folder, resume_point)


def build_checked_job(cfg: DictConfig, uri: str, checkpoint_dir: Path | None = None) -> Job:
    """`build_job`, a model too large for memory reported as the setting to lower."""
    try:
        return build_job(cfg, uri, checkpoint_dir)
    except RuntimeError as failure:
        if guards.out_of_memory(failure):
            raise ConfigError(guards.out_of_memory_message(cfg, building=True)) from failure
        raise


def train(cfg: DictConfig) -> float | None:
    """Train and test one model; return the best validation score (for sweepers)."""
    uri = tracking.resolve_uri(cfg.tracking.uri)
    tracking.check_store(uri)
    if not devices.rank_zero():
        return train_beside_rank_zero(uri)
    overrides = task_overrides()
    if cfg.get("resume"):
        return train_resumed(cfg, uri, overrides)
    job = build_checked_job(cfg, uri)
    client, experiment_id = tracking.open_store(uri, cfg.tracking.experiment)
    spec = job.datamodule.spec
    tags = {
        **tracking.environment_tags(),
        "model": job.model.name,
        "dataset": spec.name,
        "task/metric": spec.metric,
        "task/metric_mode": spec.metric_mode,
        "task/seq_len": spec.seq_len,
        "task/chance": spec.chance.get(spec.metric, ""),
        "claims": ",".join(cfg.get("claims") or []),
        "overrides": " ".join(overrides),
        "seed": cfg.seed,
        "study": study_name(),
        "checkpoint_dir": job.resume_point.path.parent.resolve(),
    }
    parent = parent_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
        tags["sweep/job"] = HydraConfig.get().job.num
    run = client.create_run(experiment_id, run_name=run_name(cfg, job.model.name, spec.name, overrides),
                            tags={k: str(v) for k, v in tags.items()})
    run_id = run.info.run_id
    job.logger.bind(run_id)
    log.info("MLflow run %s (%s) in %s", run_id, run.info.run_name, uri)
    return run_to_the_end(cfg, client, run_id, uri, job, overrides)


def train_resumed(cfg: DictConfig, uri: str, overrides: list[str]) -> float | None:
    """Reopen the run `cfg.resume` names and train on from its last checkpoint (resume.py)."""
    client, _ = tracking.open_store(uri, cfg.tracking.experiment)
    resumed = resuming.find(cfg, client, uri, overrides)
    job = build_checked_job(resumed.config, uri, resumed.checkpoint_dir)
    resuming.reopen(client, resumed)
    job.logger.bind(resumed.run_id, resumed.logged)
    log.info("MLflow run %s resumed from %s", resumed.run_id, resumed.checkpoint or "the start")
    return run_to_the_end(resumed.config, client, resumed.run_id, uri, job, overrides, resumed=True)


def train_beside_rank_zero(uri: str) -> float | None:
    """A process of rank > 0 in a multi-device run: trains beside rank 0, on the config rank 0
    wrote into the job folder they share (Lightning runs it there), and records nothing."""
    cfg = OmegaConf.load(output_dir() / "config.yaml")
    resume_from = cfg.get("resume")
    job = build_job(cfg, uri, Path(resume_from).parent if resume_from else None)
    job.datamodule.setup()
    job.trainer.fit(job.task, datamodule=job.datamodule, ckpt_path=resume_from, weights_only=True)
    ckpt = "best" if job.checkpoint.best_model_path else None
    job.trainer.test(job.task, datamodule=job.datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
    return None


def run_to_the_end(cfg: DictConfig, client, run_id: str, uri: str, job: Job, overrides: list[str],
                   resumed: bool = False) -> float | None:
    """Fit and test in the open run `run_id`, then close it FINISHED, FAILED or KILLED."""
    job.resume_point.run_id = run_id
    status, error = "FAILED", None
    try:
        best = fit_and_test(cfg, client, run_id, uri, job, overrides, resumed)
        status = "FINISHED"
        return best
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted (Ctrl-C or SIGTERM)"
        raise
    except SystemExit as exit_:
        # Lightning turns Ctrl-C into sys.exit(1) and SIGTERM into SIGTERMException (a SystemExit)
        status, error = "KILLED", f"interrupted (exit {exit_.code})"
        raise KeyboardInterrupt from exit_
    except Exception as failure:  # noqa: BLE001 - every failure is recorded, then reported
        error = f"{type(failure).__name__}: {failure}".strip().splitlines()[0]
        if guards.out_of_memory(failure):
            error = guards.out_of_memory_message(cfg)
        (job.folder / "error.txt").write_text(traceback.format_exc())
        tracking.log_artifact(client, run_id, job.folder / "error.txt")
        raise RunFailed(f"run {run_id} failed: {error} (traceback in the run's error.txt)") from failure
    finally:
        if error:
            tracking.set_tags(client, run_id, {"error": error})
        for job_log in job.folder.glob("*.log"):
            tracking.log_artifact(client, run_id, job_log)
        client.set_terminated(run_id, status)


def fit_and_test(cfg: DictConfig, client, run_id: str, uri: str, job: Job, overrides: list[str],
                 resumed: bool = False) -> float | None:
    spec, folder = job.datamodule.spec, job.folder
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))  # also read by ranks > 0
    if not resumed:  # a resumed run recorded these when it first opened
        tracking.log_params(client, run_id, tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
        (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
        for name in ("config.yaml", "overrides.yaml"):
            tracking.log_artifact(client, run_id, folder / name)
        tracking.log_metrics(client, run_id, job.model.parameter_counts())

    job.datamodule.setup()
    tracking.set_tags(client, run_id, {f"data/{key}": value for key, value in job.datamodule.describe().items()})
    job.trainer.fit(job.task, datamodule=job.datamodule, ckpt_path=cfg.get("resume"), weights_only=True)
    # test_weights=last tests the final weights, as the papers do (no checkpoint selection)
    ckpt = "best" if job.checkpoint.best_model_path and cfg.get("test_weights", "best") == "best" else None
    results = job.trainer.test(job.task, datamodule=job.datamodule, ckpt_path=ckpt, verbose=False,
                               weights_only=True)[0]

    tracking.set_tags(client, run_id, {
        "precision/trainer": job.trainer.precision,
        "precision/recurrent_dtype": str(job.model.last_recurrent_dtype).replace("torch.", ""),
        "device/accelerator": str(job.trainer.strategy.root_device),
    })
    if cfg.tracking.log_checkpoint and job.checkpoint.best_model_path:
        tracking.log_artifact(client, run_id, Path(job.checkpoint.best_model_path), "checkpoints")

    test_key = f"test/{spec.metric}"
    score = results.get(test_key, math.nan)
    chance = spec.chance.get(spec.metric, math.nan)
    speed = job.throughput.summary.get("speed/train_samples_per_s", math.nan)
    print(f"{job.model.name} on {spec.name}: {test_key} = {score:.4f} (chance {chance:.4f}); "
          f"{speed:.0f} samples/s; run {run_id}\n"
          f"  browse: mlflow ui --backend-store-uri {uri}", flush=True)
    best = job.checkpoint.best_model_score
    return float(best) if best is not None else None
