"""Models: `SequenceModel` (encoding -> recurrent stack -> head), the cells written from their
equations, and `Recurrent`, the layer that runs any cell over time like torch.nn.GRU.

    from grubench.models import GRUCell, Recurrent
    layer = Recurrent(GRUCell, input_size=100, hidden_size=64)   # the document's GRU
    out, h_n = layer(x)                                          # [B, T, 64], [1, B, 64]

`MinGRUCell` and `MinLSTMCell` (Feng et al. 2024) run in `Recurrent` as a parallel scan over
time; `GRU` and `RNN` are torch's nn.GRU and nn.RNN whose CPU training runs grubench's kernels
(`grubench.models.cpu_kernels`);
`FusedLSTM` is torch's nn.LSTM with a forget-gate bias option (`grubench.models.init`);
`convert` takes weights to and from Keras' SimpleRNN, LSTM and GRU.

Every name below is a plain class or function; none needs Hydra. docs/models.md lists the
configs, their equations and parameter formulas.
"""

from grubench.models import convert, counting
from grubench.models.cells import (
    Cell,
    GRUCell,
    JANETCell,
    LSTMCell,
    LSTMCoupledCell,
    LSTMNoForgetCell,
    LSTMNoInputCell,
    LSTMNoOutputCell,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
)
from grubench.models.cpu_kernels import GRU, LSTM, RNN
from grubench.models.init import FusedLSTM
from grubench.models.layers import Recurrent, copy_torch_weights
from grubench.models.minimal import MinGRUCell, MinLSTMCell
from grubench.models.sequence import OneHot, SequenceModel

__all__ = [
    "Cell",
    "FusedLSTM",
    "GRU",
    "GRUCell",
    "JANETCell",
    "LSTM",
    "LSTMCell",
    "LSTMCoupledCell",
    "LSTMNoForgetCell",
    "LSTMNoInputCell",
    "LSTMNoOutputCell",
    "MinGRUCell",
    "MinLSTMCell",
    "OneHot",
    "RNN",
    "Recurrent",
    "SequenceModel",
    "TorchGRUCell",
    "TorchLSTMCell",
    "TorchRNNCell",
    "convert",
    "copy_torch_weights",
    "counting",
]
