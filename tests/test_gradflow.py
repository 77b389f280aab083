"""Gradient flow through time: ||dL/dh_t|| against hand-computed cases and against cell loops
whose h_t.grad is the same quantity, for fused and cell-loop layers, stacks, and the callback."""

from __future__ import annotations

import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from grubench.config import build, choices, model_config
from grubench.data import AddingDataModule
from grubench.gradflow import (
    FlowCurve,
    compare,
    default_positions,
    gradient_flow,
    plot,
    write_csv,
)
from grubench.gradflow.callback import GradientFlow
from grubench.harness.logger import RunLogger
from grubench.harness.store import Store, resolve_uri
from grubench.models import SequenceModel
from grubench.spec import TaskSpec
from grubench.task import SequenceTask


def regression(input_size: int, seq_len: int) -> TaskSpec:
    return TaskSpec(name="t", input_kind="real", input_size=input_size, output="regression", num_outputs=1,
                    seq_len=seq_len, metric="mse", chance={})


def test_linear_rnn_gradient_is_w_to_the_power_of_the_steps_left():
    """h_t = w h_{t-1} + x_t (ReLU on positive values is the identity), y = h_T, L = mean (y - target)^2:
    dL/dh_t = w^(T-t) dL/dh_T, with dL/dh_T = 2 (h_T - target) / B for each sequence."""
    T, w, B = 12, 0.8, 3
    model = SequenceModel(regression(1, T), functools.partial(nn.RNN, nonlinearity="relu"), hidden_size=1)
    with torch.no_grad():
        model.recurrent.weight_ih_l0.fill_(1.0)
        model.recurrent.weight_hh_l0.fill_(w)
        model.recurrent.bias_ih_l0.zero_()
        model.recurrent.bias_hh_l0.zero_()
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
    x = torch.rand(B, T, 1, dtype=torch.float64) + 0.1
    target = torch.zeros(B, dtype=torch.float64)
    h_T = x[:, :, 0] @ torch.tensor([w ** (T - s) for s in range(1, T + 1)], dtype=torch.float64)
    g_T = float((2 * (h_T - target) / B).norm())

    curve = gradient_flow(model, (x.float(), target.float()))
    assert curve.steps == list(range(1, T + 1))
    assert curve.norms == pytest.approx([g_T * w ** (T - t) for t in range(1, T + 1)], rel=1e-6)
    assert curve.decay_log10 == pytest.approx((T - 1) * math.log10(w), rel=1e-6)


def loop_gradients(cell: nn.Module, model: SequenceModel, x, y) -> list[float]:
    """||dL/dh_t|| from a hand-written cell loop with h_t.grad retained: the reference. For an
    LSTM cell h_t.grad is the derivative with c_t held fixed, as gradient_flow defines it."""
    state, kept = None, []
    for x_t in x.unbind(1):
        state = cell(x_t, state)
        h = state[0] if isinstance(state, tuple) else state
        h.retain_grad()
        kept.append(h)
    nn.functional.mse_loss(model.head(h).squeeze(-1), y).backward()
    return [float(h.grad.norm()) for h in kept]


@pytest.mark.parametrize("fused, cell", [(nn.GRU, nn.GRUCell), (nn.LSTM, nn.LSTMCell), (nn.RNN, nn.RNNCell)])
def test_fused_layer_matches_a_cell_loop_with_retained_gradients(fused, cell):
    torch.manual_seed(0)
    T = 9
    model = SequenceModel(regression(3, T), functools.partial(fused), hidden_size=5).double()
    loop = cell(3, 5).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(loop, name).copy_(getattr(model.recurrent, f"{name}_l0"))
    x, y = torch.randn(4, T, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    assert gradient_flow(model, (x, y)).norms == pytest.approx(loop_gradients(loop, model, x, y), rel=1e-6)


def test_stack_gradient_is_with_respect_to_the_state_of_every_layer():
    """For a stack, g_t is the gradient with respect to the state s_t = (h^1_t, h^2_t), both
    layers' states taken as inputs of the rest of the sequence. Reference: two cells, the loop cut
    at step t and continued from leaves (a step-by-step twin of the fused layer's rerun)."""
    torch.manual_seed(1)
    T = 7
    model = SequenceModel(regression(3, T), functools.partial(nn.GRU), hidden_size=4, num_layers=2).double()
    lower, upper = nn.GRUCell(3, 4).double(), nn.GRUCell(4, 4).double()
    with torch.no_grad():
        for layer, loop in enumerate((lower, upper)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(loop, name).copy_(getattr(model.recurrent, f"{name}_l{layer}"))
    x, y = torch.randn(2, T, 3, dtype=torch.float64), torch.randn(2, dtype=torch.float64)

    def reference(t: int) -> float:
        h1 = h2 = None
        for s in range(T):
            if s == t:
                a, b = h1.detach().requires_grad_(), h2.detach().requires_grad_()
                h1, h2 = a, b
            h1 = lower(x[:, s], h1)
            h2 = upper(h1, h2)
        if t == T:
            a, b = h1.detach().requires_grad_(), h2.detach().requires_grad_()
            h1, h2 = a, b
        loss = nn.functional.mse_loss(model.head(h2).squeeze(-1), y)
        ga, gb = torch.autograd.grad(loss, [a, b], allow_unused=True)
        ga = torch.zeros_like(a) if ga is None else ga  # at t = T only the top layer reaches the loss
        return float(torch.cat([ga, gb], dim=1).norm())

    expected = [reference(t) for t in range(1, T + 1)]
    assert gradient_flow(model, (x, y)).norms == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loop_name, fused_name", [("gru_loop", "gru"), ("lstm_loop", "lstm"), ("rnn_loop", "rnn")])
def test_cell_loop_models_give_the_curve_of_their_fused_twins(loop_name, fused_name):
    if loop_name not in choices("model"):
        pytest.skip(f"no model config {loop_name}")
    from grubench.models.layers import copy_torch_weights

    task = regression(2, 10)
    fused = build(model_config(fused_name, ["model.hidden_size=6"]).model, "model", task=task)
    loop = build(model_config(loop_name, ["model.hidden_size=6"]).model, "model", task=task)
    copy_torch_weights(fused.recurrent, loop.recurrent)
    loop.head.load_state_dict(fused.head.state_dict())
    batch = (torch.randn(3, 10, 2), torch.randn(3))
    assert gradient_flow(loop, batch).norms == pytest.approx(gradient_flow(fused, batch).norms, rel=1e-6)


def test_per_step_task_and_subset_of_positions():
    T = 30
    task = TaskSpec(name="c", input_kind="tokens", input_size=10, output="per_step_classification", num_outputs=9,
                    seq_len=T, metric="acc", chance={})
    model = SequenceModel(task, functools.partial(nn.LSTM), hidden_size=8)
    batch = (torch.randint(0, 10, (4, T)), torch.randint(0, 9, (4, T)))
    full = gradient_flow(model, batch)
    some = gradient_flow(model, batch, max_positions=7)
    assert some.steps[0] == 1 and some.steps[-1] == T and len(some.steps) == 7
    assert some.norms == pytest.approx([full.norms[t - 1] for t in some.steps], rel=1e-6)
    assert all(n > 0 and math.isfinite(n) for n in full.norms)


def test_positions_and_refusals():
    assert default_positions(5, 128) == [1, 2, 3, 4, 5]
    assert default_positions(1000, 3) == [1, 500, 1000]
    model = SequenceModel(regression(2, 5), functools.partial(nn.GRU), hidden_size=3, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        gradient_flow(model, (torch.randn(1, 5, 2), torch.randn(1)))


def test_measurement_leaves_the_model_as_it_was():
    model = SequenceModel(regression(2, 5), functools.partial(nn.LSTM), hidden_size=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_flow(model, (torch.randn(2, 5, 2), torch.randn(2)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_decay_and_files(tmp_path):
    curve = FlowCurve("m", "init", [1, 2, 3], [1e-3, 1e-2, 1.0])
    assert curve.decay_log10 == pytest.approx(-3.0)
    write_csv([curve], tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines()[:2] == ["model,stage,t,norm", "m,init,1,0.001"]
    plot([curve, FlowCurve("n", "init", [1, 2, 3], [0.0, 0.5, 1.0])], tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_measures_models_at_initialisation_on_a_task_batch():
    curves = compare(["rnn", "lstm"], ["dataset.seq_len=12", "model.hidden_size=8", "dataset.train_size=8",
                                       "dataset.val_size=8", "dataset.test_size=8"], batch_size=4)
    assert [c.model for c in curves] == ["rnn", "lstm"]
    assert all(c.steps == list(range(1, 13)) and c.stage == "init" for c in curves)


def test_callback_logs_decay_at_init_and_after_training_with_plot(tmp_path):
    store = Store.open(resolve_uri(str(tmp_path / "mlflow.db")), "default")
    run = store.create_run("gradient flow", {})
    client, run_id = store.client, run.id
    logger = RunLogger(run)

    pl.seed_everything(0, verbose=False)
    data = AddingDataModule(seq_len=8, train_size=32, val_size=16, test_size=16, batch_size=8)
    cfg = model_config("gru", ["model.hidden_size=4", "optim.lr=1e-2"])
    task = SequenceTask(cfg.model, cfg.optim, data.spec)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=logger, callbacks=[GradientFlow(batch_size=4)],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)

    history = client.get_metric_history(run_id, "grad/decay_log10")
    assert sorted(m.step for m in history) == [0, 4]
    metrics = client.get_run(run_id).data.metrics
    assert {"grad/decay_log10_init", "grad/decay_log10_trained"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id, "gradient_flow")}
    assert artifacts == {"gradient_flow/curves.csv", "gradient_flow/gradient_flow.png"}
    rows = (tmp_path / "gradient_flow" / "curves.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 8
