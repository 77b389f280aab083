"""The GPU path: mixed precision on cuDNN layers and cell loops, finite gradients, the dtype
that ran recorded, CUDA-event timing and memory, gradient flow on the GPU. Skipped without CUDA.

Runs in scripts/gpu_check.sh, on a machine that may lack MLflow: nothing here needs it except
the one harness test, which is skipped there.
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from grubench.bench.cell import measure
from grubench.config import build, model_config
from grubench.data import AddingDataModule
from grubench.gradflow import gradient_flow
from grubench.spec import TaskSpec
from grubench.task import SequenceTask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FUSED = ["rnn", "gru", "lstm"]
LOOPS = ["gru_doc", "janet"]
PRECISIONS = ["32-true", "16-mixed", "bf16-mixed"]
LOW = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def model(name: str, seq_len: int = 20, hidden: int = 32, input_size: int = 8):
    task = TaskSpec(name="t", input_kind="real", input_size=input_size, output="regression", num_outputs=1,
                    seq_len=seq_len, metric="mse", chance={})
    torch.manual_seed(0)
    return build(model_config(name, [f"model.hidden_size={hidden}"]).model, "model", task=task)


def ran_dtype(net, precision: str) -> torch.dtype:
    """The dtype of the recurrent layer's output when `net` runs in `precision` on the GPU."""
    x = torch.randn(4, net.task.seq_len, net.task.input_size, device="cuda")
    with torch.autocast("cuda", dtype=LOW.get(precision, torch.float32), enabled=precision in LOW):
        return net.recurrent(x)[0].dtype


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", FUSED + LOOPS)
def test_cell_on_gpu_has_finite_gradients_and_records_the_dtype_that_ran(name, precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    net = model(name).cuda()
    row = measure(net, torch.device("cuda"), precision, batch=16, seq_len=20, warmup=1, repeats=3, max_seconds=5)
    assert row["grad_finite"] is True
    assert row["fwd_ms"] > 0 and row["train_ms"] > 0 and row["repeats"] == 3
    assert row["peak_mb"] > 0 and row["saved_mb"] > 0
    assert row["dtype"] == str(ran_dtype(net, precision)).replace("torch.", "")
    if precision == "32-true":
        assert row["dtype"] == "float32"
    elif name in FUSED:
        assert row["dtype"] in ("float16", "bfloat16")  # cuDNN's RNNs run in a low precision under autocast


@pytest.mark.parametrize("name", FUSED + LOOPS)
def test_gradient_flow_on_gpu_matches_the_cpu(name):
    net = model(name, seq_len=15)
    batch = (torch.randn(4, 15, 8), torch.randn(4))
    on_cpu = gradient_flow(net, batch)
    on_gpu = gradient_flow(net.cuda(), tuple(t.cuda() for t in batch))
    assert on_gpu.keys() == on_cpu.keys()
    for quantity, curve in on_cpu.items():
        assert on_gpu[quantity].norms == pytest.approx(curve.norms, rel=1e-5), quantity


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("name", ["gru", "lstm", "gru_doc", "janet"])
def test_lightning_mixed_precision_training_stays_finite(name, precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    pl.seed_everything(0, verbose=False)
    data = AddingDataModule(seq_len=50, train_size=512, val_size=64, test_size=64, batch_size=64)
    cfg = model_config(name, ["model.hidden_size=64"])
    task = SequenceTask(cfg.model, cfg.optim, data.spec)
    net = task.model
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=data)
    loss = trainer.callback_metrics["train/loss"]
    assert math.isfinite(float(loss))
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert net.last_recurrent_dtype in (torch.float16, torch.bfloat16, torch.float32)


def test_harness_run_on_gpu_records_precision_and_dtype(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from grubench.config import run_config
    from grubench.train import train

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = run_config(["+model=gru", "trainer=gpu", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                      "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "dataset.limit=256",
                      f"tracking.uri={store}"])
    train(cfg)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["precision/trainer"] == "16-mixed"
    assert run.data.tags["precision/recurrent_dtype"] == "float16"
    assert run.data.tags["device/accelerator"].startswith("cuda")


def test_callbacks_read_nothing_from_the_gpu_during_an_epoch():
    from types import SimpleNamespace

    from grubench.harness.callbacks import FiniteLoss, Throughput

    throughput, guard = Throughput(), FiniteLoss(check_every=100)
    module = SimpleNamespace(device=torch.device("cuda"))
    trainer = SimpleNamespace(current_epoch=0, global_step=0, loggers=[])
    x = torch.randn(64, 64, device="cuda")
    throughput.on_train_epoch_start(trainer, module)
    torch.cuda.set_sync_debug_mode("error")  # any host wait for the GPU raises
    try:
        for step in range(20):
            trainer.global_step = step
            throughput.on_train_batch_start(trainer, module, (x,), step)
            loss = (x @ x).mean()
            guard.on_before_backward(trainer, module, loss)
            throughput.on_train_batch_end(trainer, module, None, (x,), step)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    throughput.on_train_epoch_end(trainer, module)  # the epoch's one read
    assert throughput.summary["speed/step_ms"] > 0
    assert throughput.summary["speed/train_samples_per_s"] > 0
    guard.check()  # finite: no error


def test_a_nan_loss_on_the_gpu_is_found_at_the_next_read():
    from types import SimpleNamespace

    from grubench.errors import Diverged
    from grubench.harness.callbacks import FiniteLoss

    guard = FiniteLoss(check_every=100)
    trainer = SimpleNamespace(current_epoch=3, global_step=0)
    for step, value in enumerate([1.0, float("nan"), 2.0]):
        trainer.global_step = 40 + step
        guard.on_before_backward(trainer, None, torch.tensor(value, device="cuda"))
    with pytest.raises(Diverged, match=r"became nan at epoch 3, step 41"):
        guard.on_save_checkpoint(trainer, None, {})


def test_adding_data_drawn_on_the_gpu_is_the_adding_problem():
    data = AddingDataModule(seq_len=30, train_size=256, val_size=16, test_size=16, generator_device="cuda")
    data.setup()
    x, y = data.splits["train"]
    assert x.is_cuda and y.is_cuda
    assert torch.equal(x[..., 1].sum(1), torch.full((256,), 2.0, device="cuda"))
    assert torch.allclose((x[..., 0] * x[..., 1]).sum(1), y)
    again = AddingDataModule(seq_len=30, train_size=256, val_size=16, test_size=16, generator_device="cuda")
    again.setup()
    assert torch.equal(again.splits["train"][0], x)  # reproducible from the seed


def test_a_cells_peak_memory_leaves_out_what_is_held_beside_it():
    from omegaconf import OmegaConf

    from grubench.bench.grid import Cell, Runner

    settings = OmegaConf.create({"input_size": None, "seed": 0, "warmup": 0, "repeats": 2, "max_seconds": 1.0,
                                 "grid": {}, "model_overrides": []})
    runner = Runner(settings)
    cell = Cell("gru", "cuda", "32-true", 4, 10, 16)
    alone, _ = runner.run(cell)
    held = torch.empty(2**28, device="cuda")  # 1 GiB that is not the cell's (the first GPU grid's rows grew so)
    beside, _ = runner.run(cell)
    del held
    assert alone["status"] == beside["status"] == "ok"
    assert beside["peak_mb"] == pytest.approx(alone["peak_mb"], abs=1.0)
