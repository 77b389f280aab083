"""Weights to and from Keras' recurrent layers: SimpleRNN, LSTM, and GRU with either reset_after.

    from_keras(module, layer.get_weights(), reset_after=True)     Keras -> module (in place)
    to_keras(module, reset_after=True)                            module -> [kernel, recurrent_kernel, bias]

`module` is one layer, one direction: torch's nn.RNN (tanh), nn.GRU or nn.LSTM, or a
`grubench.models.Recurrent` (or a bare cell) of TorchRNNCell, TorchGRUCell, TorchLSTMCell,
LSTMCell or the document's GRUCell. The Keras layer's kind follows from the module; `reset_after`
says which GRU (Keras' default is True). The arrays are NumPy, in the order Keras'
`layer.get_weights()` gives them; a layer built with use_bias=False gives two, read as zero biases.

Keras' layouts, for input size F and H units (Keras' default activations: tanh, and sigmoid gates):

    kernel [F, k H], recurrent_kernel [H, k H], bias [k H], blocks side by side in columns:

    SimpleRNN  k = 1        h = tanh(x K + h R + b)
    LSTM       k = 4, i f c o
               i, f, o = sigmoid(x K_. + h R_. + b_.);  c~ = tanh(x K_c + h R_c + b_c)
               c = f c + i c~;  h = o tanh(c)
    GRU        k = 3, z r h, and z = 1 keeps the old state:
               z, r = sigmoid(x K_. + h R_. + b_.) (+ recurrent biases b'_. if reset_after)
               reset_after=False: h~ = tanh(x K_h + (r * h) R_h + b_h),           bias [3H]
               reset_after=True:  h~ = tanh(x K_h + b_h + r * (h R_h + b'_h)),    bias [2, 3H] = [b; b']
               h = z * h + (1 - z) * h~

What maps to what (W = K^T, U = R^T, blocks reordered as the module has them):

    SimpleRNN  -> nn.RNN, TorchRNNCell               bias_ih = b, bias_hh = 0
    LSTM       -> nn.LSTM, TorchLSTMCell             same order i f g o; bias_ih = b, bias_hh = 0
               -> LSTMCell                           bias = b
    GRU(reset_after=True)  -> nn.GRU, TorchGRUCell   torch's equations exactly: order r z n,
                                                     bias_ih = b, bias_hh = b'
    GRU(reset_after=False) -> GRUCell                the document's cell, z = 1 - z_keras: the
                                                     update gate's weights and bias change sign
                                                     (W_z = -K_z^T, U_z = -R_z^T, b_z = -b_z), order r z h

torch's two biases per gate become Keras' one as their sum (bias_ih + bias_hh). The GRUs that
differ in where the reset gate acts cannot stand in for each other (reset_after=False into
nn.GRU, reset_after=True into GRUCell): these are refused with the module that can take them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from grubench.models.cells import (
    Cell,
    GRUCell,
    LSTMCell,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
)
from grubench.models.layers import Recurrent

KERAS_GRU_IN_TORCH = ("Keras' GRU(reset_after=False) applies the reset gate before the recurrent matmul and "
                      "torch's nn.GRU after it: load it into the document's GRU, "
                      "grubench.models.Recurrent(GRUCell, F, H) (config gru_doc)")
TORCH_GRU_IN_KERAS = ("the document's GRUCell applies the reset gate before the recurrent matmul, as Keras' "
                      "GRU(reset_after=False) does: pass reset_after=False, or use torch.nn.GRU "
                      "(or Recurrent(TorchGRUCell, F, H)) for Keras' GRU(reset_after=True)")


def _layout(module: nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    """(kind, parameters): kind is "rnn", "lstm", "gru" (reset after: torch's) or "gru_doc";
    parameters maps weight_ih, weight_hh, bias_ih and bias_hh, or bias, to the module's tensors."""
    if isinstance(module, Recurrent):
        if module.num_layers != 1 or module.bidirectional:
            raise ValueError("Keras conversion takes one layer and one direction")
        module = module.cells[0]
    if isinstance(module, nn.RNNBase):
        if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0) or not module.bias:
            raise ValueError("Keras conversion takes one layer, one direction, with biases and no LSTM projection")
        kinds = {"RNN_TANH": "rnn", "GRU": "gru", "LSTM": "lstm"}
        if module.mode not in kinds:
            raise ValueError(f"Keras' SimpleRNN uses tanh; no Keras layer for torch's {module.mode}")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return kinds[module.mode], {name: getattr(module, f"{name}_l0") for name in names}
    kinds = {TorchRNNCell: "rnn", TorchGRUCell: "gru", TorchLSTMCell: "lstm", LSTMCell: "lstm", GRUCell: "gru_doc"}
    if not isinstance(module, Cell) or type(module) not in kinds:
        raise ValueError(f"no Keras layer for {type(module).__name__}; Keras conversion takes nn.RNN, nn.GRU, "
                         f"nn.LSTM or a Recurrent of {', '.join(c.__name__ for c in kinds)}")
    return kinds[type(module)], dict(module.named_parameters())


def _check_gru(kind: str, reset_after: bool) -> None:
    if kind == "gru" and not reset_after:
        raise ValueError(KERAS_GRU_IN_TORCH)
    if kind == "gru_doc" and reset_after:
        raise ValueError(TORCH_GRU_IN_KERAS)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def to_keras(module: nn.Module, reset_after: bool = True) -> list[np.ndarray]:
    """[kernel [F, kH], recurrent_kernel [H, kH], bias [kH] or [2, 3H]] for the Keras layer that
    computes what `module` does (see the module docstring); `reset_after` chooses the GRU."""
    kind, p = _layout(module)
    _check_gru(kind, reset_after)
    W, U = _numpy(p["weight_ih"]), _numpy(p["weight_hh"])
    if kind == "gru":        # torch r z n -> Keras z r h; the input and the recurrent bias as rows
        W_r, W_z, W_n = np.split(W, 3)
        U_r, U_z, U_n = np.split(U, 3)
        b_ir, b_iz, b_in = np.split(_numpy(p["bias_ih"]), 3)
        b_hr, b_hz, b_hn = np.split(_numpy(p["bias_hh"]), 3)
        return [np.concatenate([W_z.T, W_r.T, W_n.T], axis=1), np.concatenate([U_z.T, U_r.T, U_n.T], axis=1),
                np.stack([np.concatenate([b_iz, b_ir, b_in]), np.concatenate([b_hz, b_hr, b_hn])])]
    if kind == "gru_doc":    # r z h, z = 1 - z_keras -> Keras z r h with the update gate's sign flipped
        W_r, W_z, W_h = np.split(W, 3)
        U_r, U_z, U_h = np.split(U, 3)
        b_r, b_z, b_h = np.split(_numpy(p["bias"]), 3)
        return [np.concatenate([-W_z.T, W_r.T, W_h.T], axis=1), np.concatenate([-U_z.T, U_r.T, U_h.T], axis=1),
                np.concatenate([-b_z, b_r, b_h])]
    # SimpleRNN and LSTM: same block order; one bias, the sum of torch's two
    bias = _numpy(p["bias"]) if "bias" in p else _numpy(p["bias_ih"]) + _numpy(p["bias_hh"])
    return [W.T.copy(), U.T.copy(), bias]


def from_keras(module: nn.Module, weights: list[np.ndarray], reset_after: bool = True) -> nn.Module:
    """Load the weights of a Keras layer (`layer.get_weights()`) into `module`, in place; returns
    it. Shapes are checked against the module's input size F and hidden size H."""
    kind, p = _layout(module)
    _check_gru(kind, reset_after)
    H, F = p["weight_hh"].shape[1], p["weight_ih"].shape[1]
    k = {"rnn": 1, "lstm": 4, "gru": 3, "gru_doc": 3}[kind]
    if len(weights) not in (2, 3):
        raise ValueError(f"expected Keras' [kernel, recurrent_kernel, bias], got {len(weights)} arrays")
    kernel, recurrent_kernel = (np.asarray(a, dtype=np.float64) for a in weights[:2])
    bias_shape = (2, 3 * H) if kind == "gru" else (k * H,)
    bias = np.asarray(weights[2], dtype=np.float64) if len(weights) == 3 else np.zeros(bias_shape)
    if kernel.shape != (F, k * H) or recurrent_kernel.shape != (H, k * H) or bias.shape != bias_shape:
        gru = f" (GRU, reset_after={reset_after})" if kind.startswith("gru") else ""
        raise ValueError(f"expected kernel [{F}, {k * H}], recurrent_kernel [{H}, {k * H}], bias {list(bias_shape)}"
                         f"{gru}, got {kernel.shape}, {recurrent_kernel.shape}, {bias.shape}")
    if kind == "gru":
        K_z, K_r, K_h = np.split(kernel, 3, axis=1)
        R_z, R_r, R_h = np.split(recurrent_kernel, 3, axis=1)
        b_z, b_r, b_h = np.split(bias, 3, axis=1)
        values = {"weight_ih": np.concatenate([K_r.T, K_z.T, K_h.T]),
                  "weight_hh": np.concatenate([R_r.T, R_z.T, R_h.T]),
                  "bias_ih": np.concatenate([b_r[0], b_z[0], b_h[0]]),
                  "bias_hh": np.concatenate([b_r[1], b_z[1], b_h[1]])}
    elif kind == "gru_doc":
        K_z, K_r, K_h = np.split(kernel, 3, axis=1)
        R_z, R_r, R_h = np.split(recurrent_kernel, 3, axis=1)
        b_z, b_r, b_h = np.split(bias, 3)
        values = {"weight_ih": np.concatenate([K_r.T, -K_z.T, K_h.T]),
                  "weight_hh": np.concatenate([R_r.T, -R_z.T, R_h.T]), "bias": np.concatenate([b_r, -b_z, b_h])}
    else:
        values = {"weight_ih": kernel.T, "weight_hh": recurrent_kernel.T}
        if "bias" in p:
            values["bias"] = bias
        else:
            values.update(bias_ih=bias, bias_hh=np.zeros_like(bias))
    with torch.no_grad():
        for name, value in values.items():
            p[name].copy_(torch.from_numpy(np.ascontiguousarray(value)).to(p[name].dtype))
    return module
