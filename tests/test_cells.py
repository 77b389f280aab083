"""The cells follow their equations: loop twins equal torch's fused layers, the document's GRU
equals a NumPy transcription, gate semantics (C6), the LSTM ablations and their forget-gate biases.
Where the step loop is the subject, the layer is built with impl="loop". The fused path is tested
in tests/test_fused.py, the Keras conversion in tests/test_convert.py, the minimal RNNs in
tests/test_minimal.py."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch
from torch import nn

from grubench.models import (
    FusedLSTM,
    GRUCell,
    JANETCell,
    LSTMCell,
    LSTMCoupledCell,
    LSTMNoForgetCell,
    LSTMNoInputCell,
    LSTMNoOutputCell,
    Recurrent,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
    copy_torch_weights,
    layers,
)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


def numpy_weights(cell):
    return {name: p.detach().double().numpy() for name, p in cell.named_parameters()}


# ---------------------------------------------------------------------------------------------
# the loop twins of torch's fused layers


@pytest.mark.parametrize("fused_class, twin", [(nn.RNN, TorchRNNCell), (nn.GRU, TorchGRUCell), (nn.LSTM, TorchLSTMCell)])
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_loop_twin_matches_fused_layer_in_outputs_and_gradients(fused_class, twin, num_layers, bidirectional):
    torch.manual_seed(0)
    fused = fused_class(5, 16, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    loop = Recurrent(twin, 5, 16, num_layers=num_layers, bidirectional=bidirectional, impl="loop")
    copy_torch_weights(fused, loop)
    x = torch.randn(4, 30, 5)
    x_fused, x_loop = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fused, state_fused = fused(x_fused)
    out_loop, state_loop = loop(x_loop)
    torch.testing.assert_close(out_loop, out_fused, rtol=0, atol=1e-5)
    for a, b in zip(leaves(state_loop), leaves(state_fused)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)

    # a loss on every output and on the final state reaches every weight
    weights = torch.randn_like(out_fused)
    def loss(out, state):
        return (out * weights).sum() + sum(s.pow(2).sum() for s in leaves(state))
    loss(out_fused, state_fused).backward()
    loss(out_loop, state_loop).backward()
    torch.testing.assert_close(x_loop.grad, x_fused.grad, rtol=1e-5, atol=1e-5)
    for index, cell in enumerate(loop.cells):
        layer, direction = divmod(index, loop.directions)
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            expected = getattr(fused, f"{name}_{suffix}").grad
            torch.testing.assert_close(getattr(cell, name).grad, expected, rtol=1e-5, atol=1e-5,
                                       msg=lambda m: f"{name}_{suffix}: {m}")


def test_loop_accepts_an_initial_state_and_time_first_input():
    torch.manual_seed(0)
    fused = nn.LSTM(3, 8, num_layers=2, bidirectional=True)
    loop = Recurrent(TorchLSTMCell, 3, 8, num_layers=2, bidirectional=True, batch_first=False, impl="loop")
    copy_torch_weights(fused, loop)
    x, h0, c0 = torch.randn(7, 2, 3), torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    out_fused, (h_fused, c_fused) = fused(x, (h0, c0))
    out_loop, (h_loop, c_loop) = loop(x, (h0, c0))
    torch.testing.assert_close(out_loop, out_fused, rtol=0, atol=1e-5)
    torch.testing.assert_close(c_loop, c_fused, rtol=0, atol=1e-5)


def test_dropout_acts_between_layers_only_in_training():
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, 3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    layer.eval()
    assert torch.equal(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.equal(layer(x)[0], layer(x)[0])


# ---------------------------------------------------------------------------------------------
# the document's GRU


def numpy_document_gru(x, h, w, H):
    """The document's equations in float64 NumPy, one step at a time: x [B, T, F], h [B, H]."""
    W_r, W_z, W_h = np.split(w["weight_ih"], 3)
    U_r, U_z, U_h = np.split(w["weight_hh"], 3)
    b_r, b_z, b_h = np.split(w["bias"], 3)
    outputs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        r = sigmoid(x_t @ W_r.T + h @ U_r.T + b_r)
        z = sigmoid(x_t @ W_z.T + h @ U_z.T + b_z)
        candidate = np.tanh(x_t @ W_h.T + (r * h) @ U_h.T + b_h)
        h = (1 - z) * h + z * candidate
        outputs.append(h)
    return np.stack(outputs, axis=1)


def test_document_gru_matches_numpy_transcription_in_float64():
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, 6, 10).double()
    x = torch.randn(3, 25, 6, dtype=torch.float64)
    out, h_n = layer(x)
    expected = numpy_document_gru(x.numpy(), np.zeros((3, 10)), numpy_weights(layer.cells[0]), 10)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n[0].detach().numpy(), expected[:, -1], rtol=0, atol=1e-12)


def test_hand_unrolled_cell_equals_the_layer():
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, 6, 10)
    cell = layer.cells[0]
    x = torch.randn(2, 12, 6)
    h = None
    for x_t in x.unbind(1):
        out, h = cell(x_t, h)
    torch.testing.assert_close(out, layer(x)[0][:, -1], rtol=0, atol=1e-6)


def forced(cell: GRUCell, gate: str, value: float) -> GRUCell:
    """Force the document cell's gate 'r' or 'z' to 0 or 1: zero weights, bias -inf or +inf."""
    block = {"r": 0, "z": 1}[gate]
    H = cell.hidden_size
    rows = slice(block * H, (block + 1) * H)
    with torch.no_grad():
        cell.weight_ih[rows] = 0
        cell.weight_hh[rows] = 0
        cell.bias[rows] = float("inf") if value == 1 else float("-inf")
    return cell


def test_c6_update_gate_zero_keeps_the_previous_state():
    torch.manual_seed(0)
    cell = forced(GRUCell(4, 6), "z", 0)
    h = torch.randn(3, 6)
    for _ in range(3):
        out, state = cell(torch.randn(3, 4), h)
        assert torch.equal(state, h)


def test_c6_update_gate_one_takes_the_candidate():
    torch.manual_seed(0)
    cell = forced(GRUCell(4, 6), "z", 1)
    x, h = torch.randn(3, 4), torch.randn(3, 6)
    w = numpy_weights(cell)
    W_r, _, W_h = np.split(w["weight_ih"], 3)
    U_r, _, U_h = np.split(w["weight_hh"], 3)
    b_r, _, b_h = np.split(w["bias"], 3)
    xn, hn = x.double().numpy(), h.double().numpy()
    r = sigmoid(xn @ W_r.T + hn @ U_r.T + b_r)
    candidate = np.tanh(xn @ W_h.T + (r * hn) @ U_h.T + b_h)
    np.testing.assert_allclose(cell(x, h)[1].detach().numpy(), candidate, rtol=0, atol=1e-6)


def test_c6_reset_gate_zero_makes_the_candidate_come_from_the_input_alone():
    torch.manual_seed(0)
    cell = forced(forced(GRUCell(4, 6), "r", 0), "z", 1)  # z = 1: the new state is the candidate
    x = torch.randn(3, 4)
    first = cell(x, torch.randn(3, 6))[1]
    second = cell(x, torch.randn(3, 6))[1]
    assert torch.equal(first, second)
    W_h, b_h = cell.weight_ih[12:], cell.bias[12:]
    torch.testing.assert_close(first, torch.tanh(x @ W_h.T + b_h), rtol=0, atol=1e-6)
    # with the reset gate open, the previous state does reach the candidate
    with torch.no_grad():
        cell.bias[:6] = float("inf")
    assert not torch.equal(cell(x, torch.randn(3, 6))[1], cell(x, torch.randn(3, 6))[1])


def test_torch_convention_is_the_opposite_update_gate():
    """The contrast the document's claim C6 turns on: in torch's GRU, z = 1 keeps h_{t-1}."""
    torch.manual_seed(0)
    cell = TorchGRUCell(4, 6)
    with torch.no_grad():
        for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
            p[6:12] = 0
        cell.bias_ih[6:12] = float("inf")
    h = torch.randn(3, 6)
    assert torch.equal(cell(torch.randn(3, 4), h)[1], h)


# ---------------------------------------------------------------------------------------------
# JANET


def test_janet_matches_numpy_transcription_and_has_chrono_bias():
    torch.manual_seed(0)
    layer = Recurrent(JANETCell, 4, 9, seq_len=100).double()
    cell = layer.cells[0]
    assert cell.t_max == 100
    b_f, b_c = cell.bias.detach()[:9], cell.bias.detach()[9:]
    assert torch.all(b_f >= 0) and torch.all(b_f <= np.log(100)) and b_f.std() > 0
    assert torch.all(b_c == 0)

    x = torch.randn(3, 20, 4, dtype=torch.float64)
    w = numpy_weights(cell)
    W_f, W_c = np.split(w["weight_ih"], 2)
    U_f, U_c = np.split(w["weight_hh"], 2)
    bf, bc = np.split(w["bias"], 2)
    c = np.zeros((3, 9))
    for t in range(20):
        s = x.numpy()[:, t] @ W_f.T + c @ U_f.T + bf
        candidate = np.tanh(x.numpy()[:, t] @ W_c.T + c @ U_c.T + bc)
        c = sigmoid(s) * c + (1 - sigmoid(s - 1.0)) * candidate
    np.testing.assert_allclose(layer(x)[1][0].detach().numpy(), c, rtol=0, atol=1e-12)


def test_janet_t_max_from_the_factory_wins_over_seq_len_and_is_required():
    layer = Recurrent(functools.partial(JANETCell, t_max=7), 2, 3, seq_len=100)
    assert layer.cells[0].t_max == 7
    with pytest.raises(ValueError, match="needs t_max"):
        Recurrent(JANETCell, 2, 3)
    with pytest.raises(ValueError, match="at least 2"):
        JANETCell(2, 3, t_max=1)


# ---------------------------------------------------------------------------------------------
# LSTM ablations: each equals the full LSTMCell with one gate pinned


def lstm_with(variant: nn.Module, blocks: dict[str, int]) -> LSTMCell:
    """An LSTMCell holding `variant`'s weights, its other gates pinned open (weights 0, bias +inf)."""
    H = variant.hidden_size
    full = LSTMCell(variant.input_size, H).double()
    order = "ifgo"
    with torch.no_grad():
        for gate in order:
            rows = slice(order.index(gate) * H, (order.index(gate) + 1) * H)
            if gate in blocks:
                source = slice(blocks[gate] * H, (blocks[gate] + 1) * H)
                full.weight_ih[rows] = variant.weight_ih[source]
                full.weight_hh[rows] = variant.weight_hh[source]
                full.bias[rows] = variant.bias[source]
            else:
                full.weight_ih[rows] = 0
                full.weight_hh[rows] = 0
                full.bias[rows] = float("inf")
    return full


@pytest.mark.parametrize("variant, blocks", [
    (LSTMNoForgetCell, {"i": 0, "g": 1, "o": 2}),
    (LSTMNoInputCell, {"f": 0, "g": 1, "o": 2}),
    (LSTMNoOutputCell, {"i": 0, "f": 1, "g": 2}),
])
def test_lstm_without_a_gate_is_the_lstm_with_that_gate_pinned_open(variant, blocks):
    torch.manual_seed(0)
    ablated = Recurrent(variant, 4, 6, impl="loop").double()
    full = Recurrent(LSTMCell, 4, 6, impl="loop").double()
    full.cells[0] = lstm_with(ablated.cells[0], blocks)
    x = torch.randn(3, 15, 4, dtype=torch.float64)
    out_a, (h_a, c_a) = ablated(x)
    out_f, (h_f, c_f) = full(x)
    torch.testing.assert_close(out_a, out_f, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_a, c_f, rtol=0, atol=1e-12)


def test_coupled_lstm_is_the_lstm_whose_forget_gate_is_one_minus_its_input_gate():
    torch.manual_seed(0)
    coupled = Recurrent(LSTMCoupledCell, 4, 6, impl="loop").double()
    full = Recurrent(LSTMCell, 4, 6, impl="loop").double()
    full.cells[0] = lstm_with(coupled.cells[0], {"i": 0, "g": 1, "o": 2})
    with torch.no_grad():  # f = sigmoid(-a_i) = 1 - sigmoid(a_i)
        for name in ("weight_ih", "weight_hh", "bias"):
            getattr(full.cells[0], name)[6:12] = -getattr(full.cells[0], name)[0:6]
    x = torch.randn(3, 15, 4, dtype=torch.float64)
    torch.testing.assert_close(coupled(x)[0], full(x)[0], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the layer's options and errors


def test_bidirectional_stack_shapes_and_backward_direction():
    torch.manual_seed(0)
    layer = Recurrent(LSTMNoOutputCell, 3, 5, num_layers=3, bidirectional=True)
    out, (h_n, c_n) = layer(torch.randn(2, 7, 3))
    assert out.shape == (2, 7, 10) and h_n.shape == c_n.shape == (6, 2, 5)
    torch.testing.assert_close(out[:, -1, :5], h_n[4])   # last layer, forward: ends at t = T-1
    torch.testing.assert_close(out[:, 0, 5:], h_n[5])    # last layer, backward: ends at t = 0


def test_compile_falls_back_to_eager_with_one_logged_line(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    layers.compile_problem.cache_clear()
    try:
        torch.manual_seed(0)
        with caplog.at_level(logging.WARNING, logger="grubench"):
            compiled = Recurrent(GRUCell, 3, 4, compile=True)
    finally:
        layers.compile_problem.cache_clear()
    eager = Recurrent(GRUCell, 3, 4)
    eager.load_state_dict(compiled.state_dict())
    x = torch.randn(2, 5, 3)
    assert torch.equal(compiled(x)[0], eager(x)[0])
    (record,) = [r for r in caplog.records if "torch.compile" in r.getMessage()]
    assert "no compiler here" in record.getMessage() and "\n" not in record.getMessage()


def test_compiled_step_that_fails_at_its_first_call_runs_eagerly(monkeypatch, caplog):
    def failing_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("backend failed")
        return call

    cell = GRUCell(3, 4)
    monkeypatch.setattr(torch, "compile", failing_compile)
    step = layers._compiled_step(cell)
    x = torch.randn(2, 3)
    with caplog.at_level(logging.WARNING, logger="grubench"):
        first = step(cell.project(x), torch.zeros(2, 4), *cell.recurrent_weights())
        step(cell.project(x), torch.zeros(2, 4), *cell.recurrent_weights())
    assert torch.equal(first, cell(x)[1])
    assert sum("backend failed" in r.getMessage() for r in caplog.records) == 1


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        Recurrent(GRUCell, 3, 0)
    with pytest.raises(ValueError, match="dropout"):
        Recurrent(GRUCell, 3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="must build a grubench.models.cells.Cell"):
        Recurrent(nn.GRUCell, 3, 4)
    with pytest.raises(ValueError, match="impl must be one of auto, loop, fused, got 'fast'"):
        Recurrent(LSTMCell, 3, 4, impl="fast")


def test_janet_config_takes_t_max_from_the_task_unless_it_sets_one():
    from grubench.config import build
    from tests.conftest import compose_config

    for overrides, expected in ((["dataset.seq_len=37"], 37), (["dataset.seq_len=37", "model.recurrent.cell.t_max=5"], 5)):
        cfg = compose_config(["+model=janet", "model.hidden_size=4", *overrides])
        model = build(cfg.model, "model", task=build(cfg.dataset, "dataset").spec)
        assert model.recurrent.cells[0].t_max == expected


@pytest.mark.parametrize("cell", [GRUCell, JANETCell, LSTMCoupledCell, TorchGRUCell, TorchLSTMCell])
def test_cells_run_under_autocast_with_finite_gradients(cell):
    layer = Recurrent(functools.partial(cell, t_max=10) if cell is JANETCell else cell, 3, 4, batch_first=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(2, 5, 3))
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


# ---------------------------------------------------------------------------------------------
# the LSTM's forget-gate bias: torch's default, a number (Jozefowicz et al. 2015), chrono


def blocks(bias, gates, H):
    return dict(zip(gates, bias.detach().split(H)))


def test_fused_lstm_forget_bias_one_sets_b_ih_and_zeroes_b_hh_and_leaves_the_rest_as_torch():
    torch.manual_seed(0)
    default = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    fb1 = FusedLSTM(3, 5, num_layers=2, bidirectional=True, forget_bias=1.0)
    assert isinstance(fb1, nn.LSTM)
    for name, p in fb1.named_parameters():
        expected = getattr(default, name)
        if name.startswith("weight"):
            assert torch.equal(p, expected), name
            continue
        got, torch_init = blocks(p, "ifgo", 5), blocks(expected, "ifgo", 5)
        assert torch.all(got["f"] == (1.0 if name.startswith("bias_ih") else 0.0)), name
        for gate in "igo":
            assert torch.equal(got[gate], torch_init[gate]), (name, gate)
        assert not torch.all(torch_init["f"] == 0)  # torch's own forget bias is not already 0 or 1
    # the forget gate's total bias, b_ih + b_hh, is exactly the value
    assert torch.all(blocks(fb1.bias_ih_l1 + fb1.bias_hh_l1, "ifgo", 5)["f"] == 1.0)


def test_fused_lstm_chrono_takes_the_sequence_length_and_sets_b_i_to_minus_b_f():
    torch.manual_seed(0)
    lstm = FusedLSTM(3, 200, forget_bias="chrono", seq_len=100)
    b_ih, b_hh = blocks(lstm.bias_ih_l0, "ifgo", 200), blocks(lstm.bias_hh_l0, "ifgo", 200)
    assert lstm.t_max == 100
    assert torch.all(b_ih["f"] >= 0) and torch.all(b_ih["f"] <= np.log(99)) and b_ih["f"].max() > np.log(50)
    assert torch.equal(b_ih["i"], -b_ih["f"])
    assert torch.all(b_hh["f"] == 0) and torch.all(b_hh["i"] == 0) and not torch.all(b_hh["g"] == 0)
    # log u, u ~ U[1, 99]: the mean of u is 50
    assert abs(b_ih["f"].exp().mean().item() - 50) < 6
    assert FusedLSTM(3, 4, forget_bias="chrono", t_max=7, seq_len=100).t_max == 7


@pytest.mark.parametrize("cell, gates", [(LSTMCell, "ifgo"), (TorchLSTMCell, "ifgo"), (LSTMNoInputCell, "fgo"),
                                         (LSTMNoOutputCell, "ifg")])
def test_cell_lstms_take_the_same_forget_bias_options(cell, gates):
    torch.manual_seed(0)
    plain = Recurrent(cell, 3, 50, seq_len=40).cells[0]
    torch.manual_seed(0)
    fb1 = Recurrent(functools.partial(cell, forget_bias=1.0), 3, 50, seq_len=40).cells[0]
    chrono = Recurrent(functools.partial(cell, forget_bias="chrono"), 3, 50, seq_len=40).cells[0]
    main = "bias" if cell.biases == 1 else "bias_ih"
    assert torch.all(blocks(getattr(fb1, main), gates, 50)["f"] == 1.0)
    for gate in gates.replace("f", ""):
        assert torch.equal(blocks(getattr(fb1, main), gates, 50)[gate], blocks(getattr(plain, main), gates, 50)[gate])
    b = blocks(getattr(chrono, main), gates, 50)
    assert chrono.t_max == 40 and torch.all(b["f"] >= 0) and torch.all(b["f"] <= np.log(39)) and b["f"].std() > 0.3
    if "i" in gates:
        assert torch.equal(b["i"], -b["f"])
    if cell.biases == 2:
        assert torch.all(blocks(fb1.bias_hh, gates, 50)["f"] == 0)
        assert torch.all(blocks(chrono.bias_hh, gates, 50)["i"] == 0)


def test_forget_bias_errors_name_the_choices():
    with pytest.raises(ValueError, match="chrono initialisation needs t_max"):
        LSTMCell(3, 4, forget_bias="chrono")
    with pytest.raises(ValueError, match="forget_bias must be null .* or 'chrono', got 'one'"):
        FusedLSTM(3, 4, forget_bias="one")
    with pytest.raises(ValueError, match="forget_bias must be"):
        TorchLSTMCell(3, 4, forget_bias=True)
    with pytest.raises(ValueError, match="t_max must be at least 2"):
        FusedLSTM(3, 4, forget_bias="chrono", t_max=1)
    with pytest.raises(ValueError, match="needs the biases"):
        FusedLSTM(3, 4, forget_bias=1.0, bias=False)
