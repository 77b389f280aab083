"""The fused path (`grubench.models.fused`): every cell with a fused form gives the step loop's
values and gradients within float32 rounding (1e-5), through stacks, both directions and a given
initial state; `impl` chooses the path, refuses what cannot run, and a run records what ran."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from grubench.models import (
    GRUCell,
    JANETCell,
    LSTMCell,
    LSTMCoupledCell,
    LSTMNoForgetCell,
    LSTMNoInputCell,
    LSTMNoOutputCell,
    MinGRUCell,
    MinLSTMCell,
    Recurrent,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
    fused,
)

FUSED_CELLS = [LSTMCell, LSTMNoForgetCell, LSTMNoInputCell, LSTMNoOutputCell, LSTMCoupledCell,
               TorchLSTMCell, TorchGRUCell, TorchRNNCell, JANETCell, MinGRUCell, MinLSTMCell]


def path_of(cell) -> str:
    """What a Recurrent of `cell` records for its fused path on a CPU: grubench's kernel, but for
    torch's GRU and RNN twins (torch.gru, torch.rnn_tanh)."""
    return "fused" if cell in (TorchGRUCell, TorchRNNCell) else "kernel"


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def outputs_and_gradients(layer, x, state=None):
    """[out, *final state, dL/dx, dL/d every parameter] for a loss that reads every output and
    the final state with distinct weights (so that no gradient vanishes by symmetry)."""
    x = x.clone().requires_grad_()
    out, final = layer(x, state)
    weights = torch.linspace(-1.0, 1.0, out.shape[-1], dtype=out.dtype)
    loss = (out * weights).sum() + sum((p.pow(2) * 0.7).sum() for p in parts(final))
    return [out, *parts(final), *torch.autograd.grad(loss, [x, *layer.parameters()])]


def assert_same(found, expected, tolerance):
    for a, b in zip(found, expected, strict=True):
        scale = b.abs().max().clamp_min(1.0)
        assert (a - b).abs().max() <= tolerance * scale


@pytest.mark.parametrize("cell", FUSED_CELLS, ids=lambda c: c.__name__)
def test_fused_path_equals_the_step_loop_in_values_and_gradients(cell):
    torch.manual_seed(0)
    make = functools.partial(cell, forget_bias="chrono") if cell in (LSTMCell, LSTMNoInputCell) else cell
    loop = Recurrent(make, 3, 16, num_layers=2, bidirectional=True, seq_len=40, parallel=False, impl="loop")
    on_fused = copy.deepcopy(loop)
    on_fused.impl = "fused"
    x = torch.randn(8, 40, 3)
    state = tuple(torch.randn(4, 8, 16) for _ in range(2 if loop.cells[0].memory else 1))
    state = state if len(state) == 2 else state[0]
    for given in (None, state):
        expected = outputs_and_gradients(loop, x, given)
        found = outputs_and_gradients(on_fused, x, given)
        assert loop.last_impl == "loop" and on_fused.last_impl == path_of(cell)
        assert_same(found, expected, 1e-5)


@pytest.mark.parametrize("cell", FUSED_CELLS, ids=lambda c: c.__name__)
def test_fused_path_is_the_cells_equations_exactly_in_float64(cell):
    torch.manual_seed(1)
    loop = Recurrent(cell, 2, 6, seq_len=25, parallel=False, impl="loop").double()
    on_fused = copy.deepcopy(loop)
    on_fused.impl = "fused"
    x = torch.randn(4, 25, 2, dtype=torch.float64)
    assert_same(outputs_and_gradients(on_fused, x), outputs_and_gradients(loop, x), 1e-12)
    assert loop.last_impl == "loop" and on_fused.last_impl == path_of(cell)


def test_an_open_gate_is_exactly_one_with_zero_derivative_in_every_float_dtype():
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        a = torch.tensor([fused.OPEN], dtype=dtype, requires_grad=True)
        s = torch.sigmoid(a)
        s.backward()
        assert s.item() == 1.0 and a.grad.item() == 0.0, dtype


def test_ablation_weights_on_the_kernel_keep_the_missing_gate_out_of_training():
    torch.manual_seed(0)
    layer = Recurrent(LSTMNoForgetCell, 3, 5, impl="fused")
    out, _ = layer(torch.randn(2, 7, 3))
    out.sum().backward()
    cell = layer.cells[0]
    assert cell.weight_ih.shape == (15, 3) and cell.bias.grad.abs().sum() > 0   # i, g, o only
    W, U, b, b_hh = fused.lstm_params(cell)
    assert torch.equal(W[5:10], torch.zeros(5, 3)) and torch.equal(U[5:10], torch.zeros(5, 5))
    assert torch.equal(b[5:10], torch.full((5,), fused.OPEN)) and torch.equal(b_hh, torch.zeros(20))


def test_auto_chooses_by_the_measured_table_and_records_what_ran():
    x = torch.randn(2, 5, 3)
    chosen = {}
    for cell, hidden in [(LSTMCell, 256), (LSTMNoForgetCell, 64), (LSTMNoForgetCell, 128), (TorchGRUCell, 64),
                         (TorchRNNCell, 64), (GRUCell, 64), (functools.partial(JANETCell, t_max=5), 64)]:
        layer = Recurrent(cell, 3, hidden)
        layer(x)
        name = getattr(cell, "func", cell).__name__
        chosen[f"{name} {hidden}"] = layer.last_impl
    assert chosen == {"LSTMCell 256": "kernel", "LSTMNoForgetCell 64": "kernel", "LSTMNoForgetCell 128": "loop",
                      "TorchGRUCell 64": "fused", "TorchRNNCell 64": "loop", "GRUCell 64": "loop",
                      "JANETCell 64": "kernel"}
    assert fused.preferred(LSTMNoForgetCell(3, 256), "cuda") and fused.preferred(TorchRNNCell(3, 8), "cuda")
    assert not fused.preferred(JANETCell(3, 8, t_max=5), "cuda")   # grubench's kernel: a CPU's only


def test_loop_compile_and_sequence_lengths_keep_the_step_loop():
    x = torch.randn(3, 6, 2)
    for layer, lengths in [(Recurrent(LSTMCell, 2, 4, impl="loop"), None),
                           (Recurrent(LSTMCell, 2, 4, compile=True), None),
                           (Recurrent(LSTMCell, 2, 4, impl="fused"), torch.tensor([6, 3, 1]))]:
        layer(x, lengths=lengths)
        assert layer.last_impl == "loop"


def test_fused_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="impl=fused: GRUCell has no fused form"):
        Recurrent(GRUCell, 3, 4, impl="fused")
    janet = Recurrent(JANETCell, 3, 4, seq_len=10, impl="fused").to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="^impl=fused: grubench's janet kernel cannot run here: it computes in "
                                           "float32 or float64 \\(not torch.bfloat16\\)$"):
        janet(torch.randn(2, 5, 3, dtype=torch.bfloat16))
    auto = Recurrent(JANETCell, 3, 4, seq_len=10).to(torch.bfloat16)
    auto(torch.randn(2, 5, 3, dtype=torch.bfloat16))
    assert auto.last_impl == "loop"
    with pytest.raises(ValueError, match="impl=fused runs no step loop to compile"):
        Recurrent(LSTMCell, 3, 4, impl="fused", compile=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="under CPU autocast"):
        Recurrent(LSTMCell, 3, 4, impl="fused")(torch.randn(2, 5, 3))


def test_auto_runs_the_loop_under_cpu_autocast():
    layer = Recurrent(LSTMCell, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(2, 5, 3))
    assert layer.last_impl == "loop" and torch.isfinite(out).all()
