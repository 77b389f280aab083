"""Keras weights in and out: every Keras recurrent layer of the document, written out as Keras'
own equations in float64 NumPy (Keras is not a dependency), against the module it loads into."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from grubench.models import (
    GRUCell,
    JANETCell,
    LSTMCell,
    Recurrent,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
    convert,
)

B, T, F, H = 2, 80, 100, 64   # the document's x [2, 80, 100], 64 units


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def keras_simple_rnn(x, kernel, recurrent_kernel, bias):
    """Keras' SimpleRNN: h = tanh(x K + h R + b). Returns (outputs [B, T, H], (h_T,))."""
    h = np.zeros((x.shape[0], recurrent_kernel.shape[0]))
    outputs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent_kernel + bias)
        outputs.append(h)
    return np.stack(outputs, 1), (h,)


def keras_lstm(x, kernel, recurrent_kernel, bias):
    """Keras' LSTM, blocks i f c o: c = f c + i tanh(.), h = o tanh(c). Returns (outputs, (h_T, c_T))."""
    n = recurrent_kernel.shape[0]
    h, c = np.zeros((x.shape[0], n)), np.zeros((x.shape[0], n))
    outputs = []
    for t in range(x.shape[1]):
        a = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, o = sigmoid(a[:, :n]), sigmoid(a[:, n:2 * n]), sigmoid(a[:, 3 * n:])
        candidate = np.tanh(a[:, 2 * n:3 * n])
        c = f * c + i * candidate
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1), (h, c)


def keras_gru(x, kernel, recurrent_kernel, bias, reset_after):
    """Keras' GRU, blocks z r h, z = 1 keeps the old state; reset_after=True: bias [2, 3H] and the
    reset gate scales h R_h + b'_h, reset_after=False: bias [3H] and it scales h before R_h."""
    n = recurrent_kernel.shape[0]
    K_z, K_r, K_h = np.split(kernel, 3, axis=1)
    R_z, R_r, R_h = np.split(recurrent_kernel, 3, axis=1)
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros(3 * n))
    b_z, b_r, b_h = np.split(b_in, 3)
    c_z, c_r, c_h = np.split(b_rec, 3)
    h = np.zeros((x.shape[0], n))
    outputs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        z = sigmoid(x_t @ K_z + b_z + h @ R_z + c_z)
        r = sigmoid(x_t @ K_r + b_r + h @ R_r + c_r)
        if reset_after:
            candidate = np.tanh(x_t @ K_h + b_h + r * (h @ R_h + c_h))
        else:
            candidate = np.tanh(x_t @ K_h + b_h + (r * h) @ R_h)
        h = z * h + (1 - z) * candidate
        outputs.append(h)
    return np.stack(outputs, 1), (h,)


# Keras layer kind -> (units per block k, its equations, reset_after)
KINDS = {
    "SimpleRNN": (1, keras_simple_rnn, True),
    "LSTM": (4, keras_lstm, True),
    "GRU(reset_after=True)": (3, lambda *a: keras_gru(*a, reset_after=True), True),
    "GRU(reset_after=False)": (3, lambda *a: keras_gru(*a, reset_after=False), False),
}
MODULES = [
    ("SimpleRNN", lambda: nn.RNN(F, H, batch_first=True)),
    ("SimpleRNN", lambda: Recurrent(TorchRNNCell, F, H)),
    ("LSTM", lambda: nn.LSTM(F, H, batch_first=True)),
    ("LSTM", lambda: Recurrent(TorchLSTMCell, F, H)),
    ("LSTM", lambda: Recurrent(LSTMCell, F, H)),
    ("GRU(reset_after=True)", lambda: nn.GRU(F, H, batch_first=True)),
    ("GRU(reset_after=True)", lambda: Recurrent(TorchGRUCell, F, H)),
    ("GRU(reset_after=False)", lambda: Recurrent(GRUCell, F, H)),
]
IDS = ["nn.RNN", "TorchRNNCell", "nn.LSTM", "TorchLSTMCell", "LSTMCell", "nn.GRU", "TorchGRUCell", "GRUCell"]


def keras_weights(kind, seed=0):
    """Random weights in Keras' layout, biases clearly non-zero."""
    rng = np.random.default_rng(seed)
    k = KINDS[kind][0]
    bias_shape = (2, 3 * H) if kind == "GRU(reset_after=True)" else (k * H,)
    return [rng.uniform(-0.2, 0.2, (F, k * H)), rng.uniform(-0.2, 0.2, (H, k * H)), rng.uniform(-0.5, 0.5, bias_shape)]


def final_states(state):
    return [s[0] for s in state] if isinstance(state, tuple) else [state[0]]


def assert_matches_keras(module, kind, weights, x):
    """module(x) equals Keras' equations on `weights` within 1e-5, outputs and final states."""
    _, equations, _ = KINDS[kind]
    expected_out, expected_states = equations(x.double().numpy(), *weights)
    assert np.abs(expected_out).max() > 0.3 and np.abs(expected_out).std() > 0.1  # not a trivial function
    with torch.no_grad():
        out, state = module(x)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=0, atol=1e-5)
    for actual, expected in zip(final_states(state), expected_states, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind, make", MODULES, ids=IDS)
def test_keras_weights_load_and_come_back(kind, make):
    torch.manual_seed(0)
    x = torch.randn(B, T, F)
    weights = keras_weights(kind)
    reset_after = KINDS[kind][2]
    module = convert.from_keras(make(), weights, reset_after=reset_after)
    assert_matches_keras(module, kind, weights, x)

    back = convert.to_keras(module, reset_after=reset_after)
    assert len(back) == 3
    for got, given in zip(back, weights):
        assert got.shape == given.shape
        np.testing.assert_array_equal(got, given.astype(np.float32))


@pytest.mark.parametrize("kind, make", MODULES, ids=IDS)
def test_a_torch_initialised_module_exports_to_the_keras_layer_that_computes_it(kind, make):
    torch.manual_seed(1)
    module = make()
    with torch.no_grad():  # torch's two biases per gate both non-zero, to check that Keras gets their sum
        for name, p in module.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    weights = [w.astype(np.float64) for w in convert.to_keras(module, reset_after=KINDS[kind][2])]
    assert_matches_keras(module, kind, weights, torch.randn(B, T, F))


def test_use_bias_false_reads_as_zero_biases():
    weights = keras_weights("LSTM")[:2]
    module = convert.from_keras(nn.LSTM(F, H, batch_first=True), weights)
    assert torch.all(module.bias_ih_l0 == 0) and torch.all(module.bias_hh_l0 == 0)
    assert_matches_keras(module, "LSTM", [*weights, np.zeros(4 * H)], torch.randn(B, 5, F))


def test_reset_before_and_after_the_matmul_are_refused_and_the_message_names_who_can():
    reset_before = keras_weights("GRU(reset_after=False)")
    for module in (nn.GRU(F, H, batch_first=True), Recurrent(TorchGRUCell, F, H)):
        with pytest.raises(ValueError, match=r"reset_after=False.*Recurrent\(GRUCell, F, H\) \(config gru_doc\)"):
            convert.from_keras(module, reset_before, reset_after=False)
        with pytest.raises(ValueError, match=r"Recurrent\(GRUCell"):
            convert.to_keras(module, reset_after=False)
    document = Recurrent(GRUCell, F, H)
    with pytest.raises(ValueError, match=r"pass reset_after=False, or use torch.nn.GRU"):
        convert.from_keras(document, keras_weights("GRU(reset_after=True)"))
    with pytest.raises(ValueError, match=r"pass reset_after=False"):
        convert.to_keras(document)


def test_wrong_shapes_and_layers_are_one_line_errors():
    shapes = r"expected kernel \[100, 192\], recurrent_kernel \[64, 192\], bias \[2, 192\]"
    with pytest.raises(ValueError, match=shapes):
        convert.from_keras(nn.GRU(F, H), keras_weights("GRU(reset_after=False)"))
    with pytest.raises(ValueError, match=r"expected kernel \[100, 256\]"):
        convert.from_keras(nn.LSTM(F, H), keras_weights("GRU(reset_after=True)"))
    with pytest.raises(ValueError, match="one layer and one direction"):
        convert.to_keras(Recurrent(LSTMCell, F, H, num_layers=2))
    with pytest.raises(ValueError, match="one layer, one direction"):
        convert.to_keras(nn.LSTM(F, H, bidirectional=True))
    with pytest.raises(ValueError, match="SimpleRNN uses tanh"):
        convert.to_keras(nn.RNN(F, H, nonlinearity="relu"))
    with pytest.raises(ValueError, match="no Keras layer for JANETCell"):
        convert.to_keras(Recurrent(JANETCell, F, H, seq_len=10))
