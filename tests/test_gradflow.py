"""Gradient flow through time: g_x, g_state and g_c against analytic answers (a linear RNN, an LSTM
with its forget gate fixed), against hand-written cell loops and autograd's input gradient,
fused layers against their cell-loop twins, the slope and its classes, the callback at fixed
steps, and the command."""

from __future__ import annotations

import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from grubench.config import build, check, model_config, run_config
from grubench.data import AddingDataModule
from grubench.errors import ConfigError
from grubench.gradflow import (
    TOL,
    FlowCurve,
    classify,
    compare,
    default_positions,
    fit_slope,
    gradient_flow,
    plot,
    write_csv,
)
from grubench.gradflow.__main__ import main as gradflow_main
from grubench.gradflow.callback import GradientFlow
from grubench.harness.logger import RunLogger
from grubench.harness.store import Store
from grubench.models import SequenceModel
from grubench.models.layers import copy_torch_weights
from grubench.spec import TaskSpec
from grubench.task import SequenceTask, loss_and_metric_inputs


def regression(input_size: int, seq_len: int) -> TaskSpec:
    return TaskSpec(name="t", input_kind="real", input_size=input_size, output="regression", num_outputs=1,
                    seq_len=seq_len, metric="mse", chance={})


def built(name: str, task: TaskSpec, *overrides: str) -> SequenceModel:
    return build(model_config(name, list(overrides)).model, "model", task=task)


@pytest.mark.parametrize("a, kind", [(0.8, "vanishing"), (1.25, "exploding")])
def test_linear_rnn_state_gradient_is_a_to_the_power_of_the_lag(a, kind):
    """h_t = a h_{t-1} + x_t (ReLU on positive values is the identity), y = h_T, L = mean (y - 0)^2:
    dL/dh_t = a^(T-t) dL/dh_T with dL/dh_T = 2 h_T / B per sequence, dL/dx_t the same (w_ih = 1),
    so the slope against the lag is log10 a."""
    T, B = 12, 3
    model = SequenceModel(regression(1, T), functools.partial(nn.RNN, nonlinearity="relu"), hidden_size=1)
    with torch.no_grad():
        model.recurrent.weight_ih_l0.fill_(1.0)
        model.recurrent.weight_hh_l0.fill_(a)
        model.recurrent.bias_ih_l0.zero_()
        model.recurrent.bias_hh_l0.zero_()
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
    x = torch.rand(B, T, 1, dtype=torch.float64) + 0.1
    h_T = x[:, :, 0] @ torch.tensor([a ** (T - s) for s in range(1, T + 1)], dtype=torch.float64)
    g_T = float((2 * h_T / B).norm())

    flow = gradient_flow(model, (x.float(), torch.zeros(B)))
    assert set(flow) == {"x", "state"}  # no cell state
    expected = [g_T * a ** (T - t) for t in range(1, T + 1)]
    for quantity in ("x", "state"):
        assert flow[quantity].steps == list(range(1, T + 1))
        assert flow[quantity].norms == pytest.approx(expected, rel=1e-6)
        assert flow[quantity].slope == pytest.approx(math.log10(a), rel=1e-6)
        assert flow[quantity].kind == kind


@pytest.mark.parametrize("f, forget_bias", [(1.0, 50.0), (0.5, 0.0)])
def test_lstm_cell_gradient_keeps_the_forget_gate_s_rate(f, forget_bias):
    """torch's LSTM with no recurrent weights, forget gate f = sigmoid(b_f) (its input weights 0)
    and input gate closed (b_i = -50): c_t = f c_{t-1}, h_t = o_t tanh(c_t), and only h_T reaches
    the loss. So dL/dc_t = f^(T-t) dL/dc_T (through h_T) for t < T: with f = 1 the cell-state
    gradient does not decay (slope 0, flat) although dL/dh_t = 0 for every t < T; f = 0.5 halves it
    per step (slope log10 0.5). c_T itself is read by nothing but h_T: dF_T/dc_T = 0."""
    T, H = 10, 3
    model = SequenceModel(regression(2, T), functools.partial(nn.LSTM), hidden_size=H)
    layer = model.recurrent
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
        layer.bias_hh_l0.zero_()
        layer.weight_ih_l0[: 2 * H].zero_()  # gates i, f, g, o: i and f read nothing
        layer.bias_ih_l0[:H].fill_(-50.0)
        layer.bias_ih_l0[H : 2 * H].fill_(forget_bias)
    torch.manual_seed(0)
    flow = gradient_flow(model, (torch.randn(4, T, 2), torch.randn(4)))
    c = flow["c"].norms
    assert c[-1] == 0 and c[-2] > 0
    assert c[:-1] == pytest.approx([c[-2] * f ** (T - 1 - t) for t in range(1, T)], rel=1e-9)
    assert flow["c"].slope == pytest.approx(math.log10(f), abs=1e-9)
    assert flow["c"].kind == ("flat" if f == 1.0 else "vanishing")
    assert flow["state"].norms[:-1] == pytest.approx(c[:-1], rel=1e-9)  # all of it in c: dL/dh_t = 0


def loop_reference(cell: nn.Module, head: nn.Module, x, y) -> dict[str, list[float]]:
    """Norms from a hand-written loop of torch's single-step cell with every state's gradient
    retained: the reference. nn.LSTMCell computes h_t from c_t; the state handed on is copied, so
    that c_t.grad is the derivative with h_t a separate input of the rest, as gradient_flow
    defines it (c_t.grad of the cell's own c_t would count the path c_t -> h_t twice)."""
    x = x.detach().clone().requires_grad_(True)
    state, kept = None, []
    for x_t in x.unbind(1):
        out = cell(x_t, state)
        parts = tuple(p.clone() for p in (out if isinstance(out, tuple) else (out,)))
        for part in parts:
            part.retain_grad()
        kept.append(parts)
        state = parts if len(parts) > 1 else parts[0]
    nn.functional.mse_loss(head(kept[-1][0]).squeeze(-1), y).backward()

    def norm(tensors):
        return math.sqrt(sum(float(t.grad.pow(2).sum()) if t.grad is not None else 0.0 for t in tensors))

    norms = {"x": [float(g.norm()) for g in x.grad.unbind(1)], "state": [norm(parts) for parts in kept]}
    if isinstance(state, tuple):
        norms["c"] = [norm(parts[1:]) for parts in kept]
    return norms


@pytest.mark.parametrize("fused, cell", [(nn.GRU, nn.GRUCell), (nn.LSTM, nn.LSTMCell), (nn.RNN, nn.RNNCell)])
def test_fused_layer_matches_a_hand_written_cell_loop(fused, cell):
    torch.manual_seed(0)
    T = 9
    model = SequenceModel(regression(3, T), functools.partial(fused), hidden_size=5).double()
    loop = cell(3, 5).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(loop, name).copy_(getattr(model.recurrent, f"{name}_l0"))
    x, y = torch.randn(4, T, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    flow = gradient_flow(model, (x, y))
    expected = loop_reference(loop, model.head, x, y)
    assert set(flow) == set(expected)
    for quantity, norms in expected.items():
        assert flow[quantity].norms == pytest.approx(norms, rel=1e-6), quantity


def test_stack_gradient_is_with_respect_to_the_state_of_every_layer():
    """For a stack, s_t = (h^1_t, h^2_t), both layers' states taken as inputs of the rest of the
    sequence. Reference: two cells, the loop cut at step t and continued from leaves."""
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

    assert gradient_flow(model, (x, y))["state"].norms == pytest.approx([reference(t) for t in range(1, T + 1)],
                                                                       rel=1e-6)


@pytest.mark.parametrize("loop_name, fused_name", [("lstm_loop", "lstm"), ("gru_loop", "gru"), ("rnn_loop", "rnn")])
def test_cell_loop_stacks_give_the_curves_of_their_fused_twins(loop_name, fused_name):
    task = regression(2, 10)
    sizes = ("model.hidden_size=6", "model.num_layers=2")
    fused, loop = built(fused_name, task, *sizes), built(loop_name, task, *sizes)
    copy_torch_weights(fused.recurrent, loop.recurrent)
    loop.head.load_state_dict(fused.head.state_dict())
    batch = (torch.randn(3, 10, 2), torch.randn(3))
    ours, theirs = gradient_flow(loop, batch), gradient_flow(fused, batch)
    assert set(ours) == set(theirs) == ({"x", "state", "c"} if fused_name == "lstm" else {"x", "state"})
    for quantity in ours:
        assert ours[quantity].norms == pytest.approx(theirs[quantity].norms, rel=1e-9), quantity


@pytest.mark.parametrize("name", ["gru_doc", "mingru", "janet", "lstm_nfg"])
def test_input_gradient_is_autograds_gradient_of_the_input(name):
    """g_x(t) = ||dL/dx_t|| from one backward pass of the model as it trains (identity encoding),
    for a cell loop, a parallel scan, JANET (whose only state is its cell: g_c = g_state) and an
    ablation."""
    T = 8
    task = regression(3, T)
    model = built(name, task, "model.hidden_size=5").double()
    x = torch.randn(4, T, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64)
    loss, _ = loss_and_metric_inputs(model, task, (x, y))
    (grad,) = torch.autograd.grad(loss, x)
    flow = gradient_flow(model, (x.detach(), y))
    assert flow["x"].norms == pytest.approx([float(g.norm()) for g in grad.unbind(1)], rel=1e-6)
    if name == "janet":
        assert flow["c"].norms == flow["state"].norms
    assert ("c" in flow) == (name in ("janet", "lstm_nfg"))


def test_slope_and_classes():
    steps = [1, 2, 3, 4, 5]
    assert fit_slope(steps, [10.0 ** (-(5 - t) * 0.5) for t in steps]) == pytest.approx(-0.5)  # falls with the lag
    assert fit_slope(steps, [0.0, 1e3, 1e2, 1e1, 1.0]) == pytest.approx(1.0)  # a zero is left out of the fit
    assert math.isnan(fit_slope(steps, [0.0] * 4 + [1.0]))
    assert [classify(s) for s in (-2 * TOL, 2 * TOL, 0.5 * TOL, -0.5 * TOL, math.nan)] == \
        ["vanishing", "exploding", "flat", "flat", "undefined"]
    assert FlowCurve("m", "step0", [1, 2], [4.0, 2.0]).kind == "exploding"  # larger far from the loss


def test_per_step_task_and_subset_of_positions():
    T = 30
    task = TaskSpec(name="c", input_kind="tokens", input_size=10, output="per_step_classification", num_outputs=9,
                    seq_len=T, metric="acc", chance={})
    model = SequenceModel(task, functools.partial(nn.LSTM), hidden_size=8)
    batch = (torch.randint(0, 10, (4, T)), torch.randint(0, 9, (4, T)))
    full = gradient_flow(model, batch)
    some = gradient_flow(model, batch, max_positions=7)
    assert some["c"].steps[0] == 1 and some["c"].steps[-1] == T and len(some["c"].steps) == 7
    for quantity in ("x", "state", "c"):
        assert some[quantity].norms == pytest.approx([full[quantity].norms[t - 1] for t in some[quantity].steps])
    assert all(n > 0 and math.isfinite(n) for n in full["state"].norms)


def test_positions_and_refusals():
    assert default_positions(5, 128) == [1, 2, 3, 4, 5]
    assert default_positions(1000, 3) == [1, 500, 1000]
    model = SequenceModel(regression(2, 5), functools.partial(nn.GRU), hidden_size=3, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        gradient_flow(model, (torch.randn(1, 5, 2), torch.randn(1)))
    task = TaskSpec(name="p", input_kind="real", input_size=2, output="per_step_multilabel", num_outputs=2,
                    seq_len=5, metric="nll", chance={})
    model = SequenceModel(task, functools.partial(nn.GRU), hidden_size=3)
    x, y = torch.randn(2, 5, 2), torch.rand(2, 5, 2).round()
    padded = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with pytest.raises(ValueError, match="padding mask"):
        gradient_flow(model, (x, y, padded))
    assert gradient_flow(model, (x, y, torch.ones(2, 5, dtype=torch.bool)))["state"].steps == [1, 2, 3, 4, 5]


def test_measurement_leaves_the_model_as_it_was():
    model = SequenceModel(regression(2, 5), functools.partial(nn.LSTM), hidden_size=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_flow(model, (torch.randn(2, 5, 2), torch.randn(2)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_files(tmp_path):
    curves = [FlowCurve("m", "step0", [1, 2, 3], [1e-3, 1e-2, 1.0], "x"),
              FlowCurve("m", "step0", [1, 2, 3], [0.0, 0.5, 1.0], "c")]
    write_csv(curves, tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines()[:2] == ["model,stage,quantity,t,norm", "m,step0,x,1,0.001"]
    plot(curves, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_command_compares_the_lstm_s_initialisations(tmp_path, capsys):
    small = ["dataset.seq_len=12", "model.hidden_size=8", "dataset.train_size=8", "dataset.val_size=8",
             "dataset.test_size=8"]
    gradflow_main(["--models", "rnn,lstm,lstm_fb1,lstm_chrono", "--batch-size", "4", "--out", str(tmp_path), *small])
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:-1]]
    lstms = [(m, q) for m in ("lstm", "lstm_fb1", "lstm_chrono") for q in ("x", "state", "c")]
    assert [(r[0], r[1]) for r in rows] == [("rnn", "x"), ("rnn", "state"), *lstms]
    assert all(r[4] in ("vanishing", "exploding", "flat") for r in rows)
    assert len((tmp_path / "curves.csv").read_text().splitlines()) == 1 + 11 * 12
    # the forget biases of 1 and chrono keep more of the cell's gradient than torch's (about 0)
    slopes = {r[0]: float(r[2]) for r in rows if r[1] == "c"}
    assert slopes["lstm"] < slopes["lstm_fb1"] < slopes["lstm_chrono"]


def test_compare_measures_at_initialisation():
    curves = compare(["gru"], ["dataset.seq_len=6", "model.hidden_size=4", "dataset.train_size=8",
                               "dataset.val_size=8", "dataset.test_size=8"], batch_size=4)
    assert [(c.model, c.quantity, c.stage) for c in curves] == [("gru", "x", "step0"), ("gru", "state", "step0")]


@pytest.mark.parametrize("value, words", [("true", "gradient_flow=True: must be a list"), ("[0,-1]", "gradient_flow"),
                                          ("[5,5]", "distinct")])
def test_setting_refuses_what_is_not_a_list_of_steps(value, words):
    with pytest.raises(ConfigError, match=words):
        check(run_config(["+model=gru", f"gradient_flow={value}"]))
    check(run_config(["+model=gru", "gradient_flow=[0,1000]"]))


def fit(tmp_path, callbacks, max_steps: int = -1, logger=False):
    pl.seed_everything(0, verbose=False)
    data = AddingDataModule(seq_len=8, train_size=32, val_size=16, test_size=16, batch_size=8)
    cfg = model_config("lstm", ["model.hidden_size=4", "optim.lr=1e-2"])
    task = SequenceTask(cfg.model, cfg.optim, data.spec)
    trainer = pl.Trainer(max_epochs=1, max_steps=max_steps, accelerator="cpu", logger=logger, callbacks=callbacks,
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    return task, data


def test_callback_measures_at_the_listed_steps_and_names_a_missing_one(tmp_path, store):
    """One epoch of 4 updates with steps [0, 2, 100]: measured before any update and after the
    second; 100 is never reached and is tagged missing, not measured at the last step instead."""
    run = Store.open(store, "default").create_run("gradient flow", {})
    client = run.store.client
    flow = GradientFlow(steps=[100, 2, 0], batch_size=4)
    fit(tmp_path, [flow], logger=RunLogger(run))

    data = client.get_run(run.id).data
    assert {"grad/x_slope_step0", "grad/state_slope_step0", "grad/c_slope_step0",
            "grad/x_slope_step2", "grad/state_slope_step2", "grad/c_slope_step2"} == \
        {k for k in data.metrics if k.startswith("grad/")}
    assert [m.step for m in client.get_metric_history(run.id, "grad/c_slope_step2")] == [2]
    assert data.tags["grad/steps"] == "0,2,100" and data.tags["grad/missing_steps"] == "100"
    assert data.tags["grad/c_class_step0"] in ("vanishing", "exploding", "flat")
    assert {a.path for a in client.list_artifacts(run.id, "gradient_flow")} == \
        {"gradient_flow/curves.csv", "gradient_flow/gradient_flow.png"}
    rows = (tmp_path / "gradient_flow" / "curves.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3 * 8  # two steps, three quantities, eight positions

    # step 2 is the model after exactly two updates
    task, data_module = fit(tmp_path / "two", [], max_steps=2)
    data_module.setup()
    batch = tuple(t[:4] for t in next(iter(data_module.val_dataloader())))
    again = gradient_flow(task.model, batch)
    assert data.metrics["grad/c_slope_step2"] == pytest.approx(again["c"].slope, rel=1e-9)


def test_callback_keeps_its_measurements_in_the_checkpoint():
    flow = GradientFlow(steps=[0, 10])
    flow.measured = {0: [FlowCurve("lstm", "step0", [1, 2], [1.0, 2.0], "c")]}
    resumed = GradientFlow(steps=[0, 10])
    resumed.load_state_dict(flow.state_dict())
    assert resumed.measured == flow.measured
