"""Where a training step's time goes, per model and size (a measurement, not a test).

    python scripts/profile_steps.py                                   # the small study's sizes
    python scripts/profile_steps.py --models gru,lstm --sizes 128x50 --steps 60

Each model is the network the main command trains (`+model=NAME` on the adding task, batch 64,
one thread), built and fitted by the harness itself (`grubench.train.build_job`, the Lightning
Trainer with every callback a run has) under Lightning's SimpleProfiler, which times each of the
trainer's actions. Per step (means over the steps after `--skip` warm-up steps), in ms:

    forward     the task's training_step (model forward, loss, metric updates)
    backward    the backward pass
    optimiser   the rest of the optimizer step: gradient clipping, zero_grad, Adam's update
    data        the next batch from the data loader
    rest        the Lightning loop and the callbacks around the step
    step        all of it

with the recurrent path that ran (`model/impl`: fused, kernel, loop, scan).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import warnings

import torch

from grubench.config import check, run_config
from grubench.harness.allocator import keep_freed_memory
from grubench.train import build_job

MODELS = "rnn,gru,lstm,gru_doc,lstm_eq,lstm_nfg,lstm_nig,lstm_nog,janet,mingru,minlstm"
PARTS = ("forward", "backward", "optimiser", "data", "rest", "step")


def per_step(durations: dict[str, list[float]], skip: int) -> dict[str, float]:
    """ms per step of each part (the module docstring) from SimpleProfiler's recorded durations."""
    def mean(action: str) -> float:
        found = [name for name in durations if name == action or name.endswith("]" + action)]
        if not found:
            return 0.0
        return 1000 * statistics.fmean(durations[found[0]][skip:])

    forward = mean("SingleDeviceStrategy.training_step")
    backward = mean("SingleDeviceStrategy.backward")
    optimiser = mean("SequenceTask.optimizer_step") - forward - backward
    data = mean("[_TrainingEpochLoop].train_dataloader_next")
    step = mean("run_training_batch") + data
    return {"forward": forward, "backward": backward, "optimiser": optimiser, "data": data,
            "rest": step - forward - backward - optimiser - data, "step": step}


def profile(model: str, hidden: int, length: int, steps: int, skip: int, store: str) -> tuple[dict, str]:
    cfg = run_config([f"+model={model}", "threads=1", f"model.hidden_size={hidden}", f"dataset.seq_len={length}",
                      f"dataset.train_size={64 * (steps + skip)}", "dataset.val_size=64", "dataset.test_size=64",
                      "trainer.max_epochs=1", "trainer.limit_val_batches=1", "+trainer.profiler=simple",
                      "trainer.enable_progress_bar=false", f"tracking.uri={store}"])
    check(cfg)
    job = build_job(cfg)
    job.trainer.fit(job.task, datamodule=job.datamodule)
    return per_step(job.trainer.profiler.recorded_durations, skip), job.task.model.last_recurrent_impl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--sizes", default="64x30,64x100,256x200", help="HIDDENxLENGTH, comma-separated")
    parser.add_argument("--steps", type=int, default=30, help="steps measured per model and size")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    keep_freed_memory()
    store = f"sqlite:///{tempfile.mkdtemp(prefix='profile-steps-')}/mlflow.db"
    print(f"training step, batch 64, one thread, torch {torch.__version__}; ms per step")
    print(f"{'model':<10} {'H':>4} {'T':>4} {'path':<7}" + "".join(f"{part:>10}" for part in PARTS))
    for size in args.sizes.split(","):
        hidden, length = (int(n) for n in size.split("x"))
        for model in args.models.split(","):
            parts, path = profile(model, hidden, length, args.steps, args.skip, store)
            print(f"{model:<10} {hidden:>4} {length:>4} {path or '-':<7}"
                  + "".join(f"{parts[part]:>10.2f}" for part in PARTS), flush=True)


if __name__ == "__main__":
    main()
