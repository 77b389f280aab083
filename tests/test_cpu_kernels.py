"""grubench's CPU kernels (`grubench.models.GRU`, `LSTM`, `RNN`): torch's GRU's, LSTM's and RNN's
values and gradients within float32 rounding (1e-5; float64 1e-12) through stacks, both directions, a given
initial state, time-first input and no biases; `impl` chooses, torch's layer runs where the kernel
cannot, and a run records which ran."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from grubench.models import GRU, LSTM, RNN, SequenceModel
from grubench.models.cpu_kernels import extension
from grubench.spec import TaskSpec

LAYOUTS = {
    "one layer": {},
    "two layers, both directions": {"num_layers": 2, "bidirectional": True},
    "time first, no biases": {"batch_first": False, "bias": False},
}


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def results(layer, x, state):
    """[out, final state (h_n, and c_n for the LSTM), dL/dx, dL/d initial state, dL/d every
    parameter] for a loss that reads every output and the final state with distinct weights."""
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in parts(state))
    out, final = layer(x, state if len(state) == 2 else state[0])
    weights = torch.linspace(-1.0, 1.0, out.shape[-1], dtype=out.dtype)
    loss = (out * weights).sum() + sum((s.pow(2) * scale).sum() for s, scale in zip(parts(final), (0.7, 0.3)))
    return [out, *parts(final), *torch.autograd.grad(loss, [x, *state, *layer.parameters()])]


TWINS = {"GRU": (GRU, nn.GRU), "LSTM": (LSTM, nn.LSTM), "RNN": (RNN, nn.RNN)}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("kind", TWINS)
def test_kernel_equals_torchs_layer_in_values_and_gradients(kind, layout, dtype, tolerance):
    assert not isinstance(extension(), str), extension()
    torch.manual_seed(0)
    options = {"batch_first": True, **LAYOUTS[layout]}
    ours, theirs = TWINS[kind]
    kernel = ours(3, 16, **options).to(dtype)
    torch_gru = theirs(3, 16, **options).to(dtype)
    torch_gru.load_state_dict(kernel.state_dict())
    directions = 2 if kernel.bidirectional else 1
    x = torch.randn(8, 40, 3, dtype=dtype)
    if not kernel.batch_first:
        x = x.transpose(0, 1)
    h0 = tuple(torch.randn(kernel.num_layers * directions, 8, 16, dtype=dtype) for _ in range(2 if kind == "LSTM" else 1))
    found, expected = results(kernel, x, h0), results(torch_gru, x, h0)
    assert kernel.last_impl == "kernel"
    for a, b in zip(found, expected, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= tolerance * b.abs().max().clamp_min(1.0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("kind", TWINS)
def test_without_an_initial_state_the_state_starts_at_zero(kind, layout, dtype, tolerance):
    """The kernel skips the zero state's products (its first step, its share of dL/dW_hh)."""
    torch.manual_seed(0)
    ours, theirs = TWINS[kind]
    kernel = ours(2, 8, **{"batch_first": True, **LAYOUTS[layout]}).to(dtype)
    torch_layer = theirs(2, 8, **{"batch_first": True, **LAYOUTS[layout]}).to(dtype)
    torch_layer.load_state_dict(kernel.state_dict())
    x = torch.randn(4, 30, 2, dtype=dtype) if kernel.batch_first else torch.randn(30, 4, 2, dtype=dtype)

    def without_state(layer):
        inputs = x.clone().requires_grad_()
        out, final = layer(inputs)
        loss = (out * torch.linspace(-1.0, 1.0, out.shape[-1], dtype=dtype)).sum() + sum(s.pow(2).sum() for s in parts(final))
        return [out, *parts(final), *torch.autograd.grad(loss, [inputs, *layer.parameters()])]

    for a, b in zip(without_state(kernel), without_state(torch_layer), strict=True):
        assert (a - b).abs().max() <= tolerance * b.abs().max().clamp_min(1.0)
    assert kernel.last_impl == "kernel"


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(0)
    kernel = GRU(2, 8, num_layers=2, dropout=0.5, batch_first=True)
    torch_gru = nn.GRU(2, 8, num_layers=2, dropout=0.5, batch_first=True)
    torch_gru.load_state_dict(kernel.state_dict())
    x = torch.randn(4, 20, 2)
    kernel.eval(), torch_gru.eval()
    assert torch.allclose(kernel(x)[0], torch_gru(x)[0], atol=1e-6)
    kernel.train()
    assert not torch.allclose(kernel(x)[0], torch_gru.eval()(x)[0], atol=1e-3)


def test_torchs_gru_runs_where_the_kernel_cannot_and_the_layer_says_which_ran():
    layer = GRU(2, 8, batch_first=True)
    x = torch.randn(4, 10, 2)
    layer(x)
    assert layer.last_impl == "kernel"
    packed = pack_padded_sequence(x, torch.tensor([10, 7, 5, 2]), batch_first=True)
    layer(packed)
    assert layer.last_impl == "fused"
    layer(x.to(torch.bfloat16).float())   # float32 again: the kernel
    assert layer.last_impl == "kernel"
    layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert layer.last_impl == "fused"
    fused = GRU(2, 8, batch_first=True, impl="fused")
    fused(x)
    assert fused.last_impl == "fused"
    projected = LSTM(2, 8, proj_size=4, batch_first=True)
    projected(x)
    assert projected.last_impl == "fused"


def test_impl_kernel_refuses_in_one_line_where_the_kernel_cannot_run():
    layer = GRU(2, 8, batch_first=True, impl="kernel")
    with pytest.raises(RuntimeError, match="^impl=kernel: grubench's CPU kernel cannot run here: .*CPU autocast$"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(torch.randn(4, 10, 2))
    with pytest.raises(ValueError, match="impl must be one of auto, kernel, fused"):
        GRU(2, 8, impl="loop")
    with pytest.raises(RuntimeError, match="^impl=kernel: .*: it computes tanh \\(not rnn_relu\\)$"):
        RNN(2, 8, nonlinearity="relu", impl="kernel")(torch.randn(4, 10, 2))
    relu = RNN(2, 8, nonlinearity="relu")
    relu(torch.randn(4, 10, 2))
    assert relu.last_impl == "fused"


def test_a_wrong_initial_state_is_refused_as_torch_refuses_it():
    layer = GRU(2, 8, batch_first=True)
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        layer(torch.randn(4, 10, 2), torch.zeros(1, 3, 8))


@pytest.mark.parametrize("name, layer", [("gru", GRU), ("lstm", LSTM), ("lstm_chrono", LSTM), ("rnn", RNN)])
def test_a_model_built_from_its_config_runs_the_kernel_and_records_it(name, layer):
    from grubench.config import build, model_config

    task = TaskSpec(name="adding", input_kind="real", input_size=2, output="regression", num_outputs=1,
                    seq_len=20, metric="mse", chance={})
    model = build(model_config(name, ["model.hidden_size=8"]).model, "model", task=task)
    assert isinstance(model, SequenceModel) and isinstance(model.recurrent, layer)
    model(torch.randn(4, 20, 2)).sum().backward()
    assert model.last_recurrent_impl == "kernel"


def test_without_a_compiler_torchs_gru_runs_and_says_why(tmp_path):
    import os
    import subprocess
    import sys

    probe = ("import torch; from grubench.models import GRU; from grubench.models.cpu_kernels import extension\n"
             "layer = GRU(2, 8, batch_first=True); layer(torch.randn(4, 10, 2))\n"
             "print(layer.last_impl); print(extension())")
    env = {**os.environ, "CXX": "/nonexistent/c++", "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0] == "fused"
    assert done.stdout.splitlines()[1].startswith("it could not be built (")
    assert "torch's GRU and RNN (and the step loops) run instead" in done.stderr
