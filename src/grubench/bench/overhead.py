"""`python -m grubench.bench.overhead [overrides]`: what the training harness costs per step.

The same model (same initial weights), data, batches and number of steps, trained two ways:

    harness  exactly what `python -m grubench` runs: `grubench.train.build_job` (Lightning Trainer
             from the trainer config, SequenceTask with its torchmetrics and self.log calls,
             checkpointing, the Throughput and FiniteLoss callbacks, the MLflow logger bound to an
             open run), then `trainer.fit`
    plain    a PyTorch loop over the same batches: the task's loss, zero_grad, backward, gradient
             clipping as the trainer config asks, optimiser step; the same validation batches
             under no_grad at the end of each epoch; on the device and in the precision the
             trainer config asks for (`trainer=gpu`: CUDA, fp16 autocast with a gradient scaler)

Both note the time at the start of every training step. A step's time is the interval to the
start of the next step in the same epoch, so everything done between steps counts (data,
hooks, logging, metrics, progress bar); the first `skip` intervals of each trial are warm-up.
Epoch boundaries (validation, checkpoint, epoch-end logging) are not steps: they are reported
as the whole fit's wall time beside the step times.

    step ratio  = plain median step time / harness median step time
                = harness throughput / raw throughput           (aim: >= 0.95)
    fit ratio   = plain wall time / harness wall time, whole fit (startup and epoch ends included)

Trials alternate harness, plain, harness, plain ...; the ratios quoted are medians over rounds.
`--clock cpu` times steps by this process's CPU time instead of the wall clock: on a CPU shared
with other work it is far steadier (it leaves out time the process waits, e.g. on a GPU or I/O,
so use the wall clock on a GPU).
`--profile FILE` also profiles the steady-state steps of one harness fit (cProfile) and prints
where their time goes.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import itertools
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from grubench.config import build, check, run_config
from grubench.errors import ConfigError
from grubench.harness.arguments import store_argument
from grubench.harness.command import run_command
from grubench.harness.logger import RunLogger
from grubench.harness.runs import tracked_run
from grubench.harness.store import Store, resolve_uri
from grubench.task import loss_and_metric_inputs
from grubench.train import build_job

DEFAULTS = ["+model=gru", "trainer=cpu", "trainer.max_epochs=2", "trainer.limit_train_batches=60",
            "trainer.limit_val_batches=4", "trainer.limit_test_batches=4"]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class StepClock(pl.Callback):
    """Notes the time at the start of each training step, per epoch."""

    def __init__(self, clock: str = "wall"):
        self.epochs: list[list[float]] = []
        self.now = CLOCKS[clock]

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1].append(self.now())


def step_times(epochs: list[list[float]], skip: int) -> list[float]:
    """Intervals between consecutive step starts within each epoch, in ms, without the first `skip`."""
    intervals = [1000 * (b - a) for starts in epochs for a, b in zip(starts, starts[1:])]
    return intervals[skip:]


def harness_trial(cfg: DictConfig, uri: str, extra_callbacks: list[pl.Callback] = (), clock: str = "wall") -> dict:
    """One `trainer.fit` of the real harness, in an MLflow run of experiment `cfg.tracking.experiment`."""
    job = build_job(cfg)
    store = Store.open(uri, cfg.tracking.experiment)
    with tracked_run(store, f"overhead-harness-{job.task.model.name}", {"bench/role": "overhead"}) as run:
        job.trainer.loggers = [RunLogger(run)]
        steps = StepClock(clock)
        job.trainer.callbacks.extend([steps, *extra_callbacks])
        job.datamodule.setup()
        began = time.perf_counter()
        job.trainer.fit(job.task, datamodule=job.datamodule)
        wall = time.perf_counter() - began
    return {"epochs": steps.epochs, "wall_s": wall, "steps": job.trainer.global_step}


def plain_trial(cfg: DictConfig, clock: str = "wall") -> dict:
    """The same training as `harness_trial` as a plain PyTorch loop (see the module docstring)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    device, low = plain_device(cfg.trainer)
    datamodule = build(cfg.dataset, "dataset")
    model = build(cfg.model, "model", task=datamodule.spec).to(device)
    optimizer = build(cfg.optim, "optim", params=model.parameters())
    trainer = cfg.trainer
    clip = trainer.get("gradient_clip_val")
    scaler = torch.amp.GradScaler(device.type, enabled=low is torch.float16)

    def loss_of(batch):  # the same loss as the task's, no Lightning machinery
        with torch.autocast(device.type, dtype=low or torch.float32, enabled=low is not None):
            return loss_and_metric_inputs(model, datamodule.spec, batch)

    datamodule.setup()
    datamodule.to_device(device)
    now = CLOCKS[clock]
    began = time.perf_counter()
    epochs = []
    for _ in range(int(trainer.max_epochs)):
        starts = []
        model.train()
        for batch in itertools.islice(datamodule.train_dataloader(), _limit(trainer.limit_train_batches)):
            starts.append(now())
            loss, _ = loss_of(batch)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
        epochs.append(starts)
        model.eval()
        with torch.no_grad():
            for batch in itertools.islice(datamodule.val_dataloader(), _limit(trainer.limit_val_batches)):
                loss_of(batch)
    return {"epochs": epochs, "wall_s": time.perf_counter() - began,
            "steps": sum(len(e) for e in epochs)}


def plain_device(trainer: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """(the device, the autocast dtype or None) the trainer config `trainer` trains in."""
    accelerator = str(trainer.get("accelerator", "auto"))
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    precision = str(trainer.get("precision", "32-true"))
    low = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    return device, low


def _limit(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value <= 1.0:
        raise ConfigError(f"trainer.limit_*_batches={value}: the overhead measurement takes whole numbers of batches "
                          "(e.g. trainer.limit_train_batches=60)")
    return int(value)


def measure(overrides: list[str], rounds: int = 3, skip: int = 5, uri: str | None = None,
            clock: str = "wall") -> dict:
    """Alternate harness and plain trials `rounds` times; return per-round numbers and medians."""
    cfg = run_config([*DEFAULTS, *overrides])
    check(cfg)
    for key in ("limit_train_batches", "limit_val_batches"):
        _limit(cfg.trainer.get(key))  # whole numbers of batches, refused before any trial
    uri = resolve_uri(uri or f"{tempfile.mkdtemp(prefix='grubench-overhead-')}/mlflow.db")
    cfg.tracking.uri, cfg.tracking.experiment = uri, "overhead"
    results = []
    for _ in range(rounds):
        harness = harness_trial(copy.deepcopy(cfg), uri, clock=clock)
        plain = plain_trial(copy.deepcopy(cfg), clock=clock)
        h_steps, p_steps = step_times(harness["epochs"], skip), step_times(plain["epochs"], skip)
        results.append({
            "harness_step_ms": statistics.median(h_steps), "plain_step_ms": statistics.median(p_steps),
            "harness_wall_s": harness["wall_s"], "plain_wall_s": plain["wall_s"],
            "steps": harness["steps"], "plain_steps": plain["steps"],
        })
    for r in results:
        r["step_ratio"] = r["plain_step_ms"] / r["harness_step_ms"]
        r["fit_ratio"] = r["plain_wall_s"] / r["harness_wall_s"]
        r["extra_ms_per_step"] = r["harness_step_ms"] - r["plain_step_ms"]
    summary = {key: statistics.median(r[key] for r in results)
               for key in ("step_ratio", "fit_ratio", "harness_step_ms", "plain_step_ms", "extra_ms_per_step",
                           "harness_wall_s", "plain_wall_s")}
    return {"rounds": results, "summary": summary, "uri": uri, "config": cfg}


class StepProfiler(pl.Callback):
    """cProfile over the training steps of the first epoch after the first `skip` (no startup,
    no validation, no epoch end): where the time of a steady-state step goes."""

    def __init__(self, skip: int):
        self.skip = skip
        self.profile = cProfile.Profile()
        self.steps = 0
        self.on = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == self.skip:
            self.profile.enable()
            self.on = True
        if self.on:
            self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        if self.on:
            self.profile.disable()
            self.on = False


def profile_harness(overrides: list[str], path: Path, skip: int = 5, top: int = 30) -> str:
    """cProfile the steady-state steps of one harness fit; save the stats to `path`; return the
    top functions by cumulative time per step."""
    cfg = run_config([*DEFAULTS, *overrides])
    uri = resolve_uri(f"{tempfile.mkdtemp(prefix='grubench-overhead-')}/mlflow.db")
    cfg.tracking.uri, cfg.tracking.experiment = uri, "overhead"
    profiler = StepProfiler(skip)
    harness_trial(cfg, uri, extra_callbacks=[profiler])
    profiler.profile.dump_stats(str(path))
    text = io.StringIO()
    stats = pstats.Stats(profiler.profile, stream=text)
    text.write(f"cProfile of {profiler.steps} steady-state harness steps (divide times by that for per step)\n")
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m grubench.bench.overhead", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help=f"config overrides after the defaults {' '.join(DEFAULTS)}; "
                        "tracking.uri=STORE keeps the harness runs (default: a temporary store)")
    parser.add_argument("--rounds", type=int, default=3, help="harness/plain pairs (medians are over these)")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out of each trial")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="step times by wall clock, or by this process's CPU time (steadier on a shared CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--profile", default=None, help="also cProfile one harness fit into this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    given = any(o.startswith("tracking.uri=") for o in args.overrides)
    uri, overrides = store_argument(args.overrides) if given else (None, args.overrides)
    result = measure(overrides, args.rounds, args.skip, uri, args.clock)
    print(f"{'round':>5} {'harness ms/step':>16} {'plain ms/step':>14} {'step ratio':>10} "
          f"{'harness fit s':>14} {'plain fit s':>12} {'fit ratio':>9}")
    for i, r in enumerate(result["rounds"], 1):
        print(f"{i:>5} {r['harness_step_ms']:>16.3f} {r['plain_step_ms']:>14.3f} {r['step_ratio']:>10.3f} "
              f"{r['harness_wall_s']:>14.2f} {r['plain_wall_s']:>12.2f} {r['fit_ratio']:>9.3f}")
    s = result["summary"]
    print(f"median: step ratio (harness/raw throughput) {s['step_ratio']:.3f}, harness adds "
          f"{s['extra_ms_per_step']:.3f} ms per step; fit ratio {s['fit_ratio']:.3f} "
          f"({result['rounds'][0]['steps']} steps; {' '.join(args.overrides) or 'defaults'})")
    if args.profile:
        print(profile_harness(args.overrides, Path(args.profile), args.skip))


if __name__ == "__main__":
    run_command("grubench.bench.overhead", main)
