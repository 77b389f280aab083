"""The measuring and guarding callbacks without per-step waits for the GPU (harness/callbacks.py).

The deferred finite-loss check (the GPU's way: the flag kept on the device, read every N steps
and before any checkpoint) is run here on the CPU, so that its promise is pinned where CI runs.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from grubench.config import model_config
from grubench.errors import Diverged, RunFailed
from grubench.harness import callbacks
from grubench.spec import TaskSpec
from grubench.task import SequenceTask
from grubench.train import train
from tests.conftest import compose_config, runs
from tests.test_faults import SHORT


def nan_at(monkeypatch, epoch: int, batch: int) -> None:
    from grubench.task import SequenceTask

    step = SequenceTask.training_step

    def training_step(self, batch_, batch_idx):
        loss = step(self, batch_, batch_idx)
        return loss * float("nan") if self.current_epoch == epoch and batch_idx == batch else loss

    monkeypatch.setattr(SequenceTask, "training_step", training_step)


def test_deferred_check_names_the_first_bad_step_and_keeps_the_last_good_checkpoint(fresh_store, monkeypatch):
    nan_at(monkeypatch, epoch=2, batch=1)
    # Deferred as on a GPU, read far less often than every step: only an epoch's end or a
    # checkpoint's save can find the bad loss, after more steps have trained on NaN weights.
    monkeypatch.setattr("grubench.train.FiniteLoss", partial(callbacks.FiniteLoss, defer=True, check_every=1000))
    with pytest.raises(RunFailed, match=r"training loss became nan at epoch 2, step 13; lower optim.lr"):
        train(compose_config([*SHORT, f"tracking.uri={fresh_store}"]))
    (run,) = runs(fresh_store)
    assert run.info.status == "FAILED"
    assert len(MlflowClient(fresh_store).get_metric_history(run.info.run_id, "val/mse")) == 2
    folder = Path(run.data.tags["checkpoint_dir"])
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2  # written at the start of epoch 2, before the bad step
    assert all(torch.isfinite(w).all() for w in last["state_dict"].values())
    best = torch.load(folder / "best.ckpt", weights_only=True)
    assert all(torch.isfinite(w).all() for w in best["state_dict"].values())


def test_deferred_check_reads_the_host_only_every_n_steps():
    guard = callbacks.FiniteLoss(check_every=3, defer=True)

    class Trainer:
        current_epoch, global_step = 0, 0

    trainer = Trainer()
    reads = []
    real_check = guard.check
    guard.check = lambda: (reads.append(trainer.global_step), real_check())
    for step, value in enumerate([1.0, 2.0, 1.0, 1.0, float("inf"), 1.0]):
        trainer.global_step = step
        if step < 5:
            guard.on_before_backward(trainer, None, torch.tensor(value))
        else:
            with pytest.raises(Diverged, match=r"became inf at epoch 0, step 4"):
                guard.on_before_backward(trainer, None, torch.tensor(value))
    assert reads == [2, 5]  # a read after the 3rd and the 6th step, none in between


def test_a_checkpoint_is_never_saved_after_a_bad_loss():
    guard = callbacks.FiniteLoss(check_every=1000, defer=True)

    class Trainer:
        current_epoch, global_step = 1, 7

    guard.on_before_backward(Trainer(), None, torch.tensor(float("nan")))
    with pytest.raises(Diverged, match=r"became nan at epoch 1, step 7"):
        guard.on_save_checkpoint(Trainer(), None, {})


def test_throughput_logs_one_summary_per_epoch_from_every_step(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train(compose_config(["+model=gru", "model.hidden_size=8", "dataset.limit=64", "dataset.batch_size=16",
                          "dataset.seq_len=10", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                          f"tracking.uri={store}"]))
    (run,) = runs(store)
    history = MlflowClient(store).get_metric_history(run.info.run_id, "speed/train_samples_per_s")
    assert len(history) == 2
    assert all(0 < m.value < math.inf for m in history)
    step_ms = run.data.metrics["speed/step_ms"]
    assert 0 < step_ms < 1000


TASKS = {  # one of each output kind: (spec, a batch of size B)
    "regression": (TaskSpec("t", "real", 3, "regression", 1, 6, "mse", {}),
                   lambda b: (torch.randn(b, 6, 3), torch.randn(b))),
    "classification": (TaskSpec("t", "real", 3, "classification", 4, 6, "acc", {}),
                       lambda b: (torch.randn(b, 6, 3), torch.randint(4, (b,)))),
    "per_step_classification": (TaskSpec("t", "tokens", 5, "per_step_classification", 5, 6, "acc", {}, 2),
                                lambda b: (torch.randint(5, (b, 6)), torch.randint(5, (b, 6)))),
    "per_step_multilabel": (TaskSpec("t", "real", 3, "per_step_multilabel", 3, 6, "nll", {}),
                            lambda b: (torch.randn(b, 6, 3), torch.randint(2, (b, 6, 3)).float())),
}


@pytest.mark.parametrize("kind", TASKS)
def test_a_training_step_reads_nothing_back_to_the_host(kind, monkeypatch):
    """On a GPU a read of a tensor's value on the host waits for the step's kernels; here any
    such read in a training step raises. The epoch's train loss is the mean per sequence."""
    spec, batch = TASKS[kind]
    cfg = model_config("gru", ["model.hidden_size=8"])
    task = SequenceTask(cfg.model, cfg.optim, spec)
    first, second = batch(3), batch(1)
    task.model(first[0])  # whatever is made once (a kernel's build) before the reads are barred

    def read(*_):
        raise AssertionError("a training step read a tensor's value on the host")

    with monkeypatch.context() as barred:
        for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
            barred.setattr(torch.Tensor, name, read)
        losses = [task.training_step(b, i).detach() for i, b in enumerate((first, second))]
    assert task.train_loss.compute() == pytest.approx(float(losses[0] * 3 + losses[1]) / 4)
    task.metrics["train_metric"].compute()
