"""Closed-form parameter counts and forward FLOPs per time step of recurrent stacks.

One layer and direction of a cell with G gate blocks, input size F, hidden size H, `biases`
bias vectors per gate (1, or 2 for torch's layers) and `pointwise` elementwise operations per
unit besides the bias adds (see `grubench.models.cells`):

    params = G H (F + H) + biases G H
    FLOPs  = 2 G H (F + H) + biases G H + pointwise H       per time step and sequence

Cells whose gates read the input only (`recurrent = False`: minGRU, minLSTM) have no recurrent
matrices, so F + H becomes F: params = G H F + biases G H, FLOPs = 2 G H F + biases G H + pointwise H.

A matrix-vector product with an [N, K] matrix counts 2 N K (a multiply and an add per weight);
every elementwise add, multiply or nonlinearity counts 1. A stack of L layers and D directions
sums this over layers and directions; layer l > 0 reads F = D H features.

| layer                     | G | biases | pointwise | params, F = 100, H = 64 |
|---------------------------|---|--------|-----------|--------------------------|
| torch nn.RNN, TorchRNNCell  | 1 | 2 | 2  | 10,624 |
| torch nn.GRU, TorchGRUCell  | 3 | 2 | 11 | 31,872 |
| torch nn.LSTM, TorchLSTMCell| 4 | 2 | 13 | 42,496 |
| GRUCell (the document's)    | 3 | 1 | 11 | 31,680 |
| JANETCell                   | 2 | 1 | 10 | 21,120 |
| LSTMCell                    | 4 | 1 | 13 | 42,240 |
| LSTMNoForget/Input/OutputCell | 3 | 1 | 10 | 31,680 |
| LSTMCoupledCell             | 3 | 1 | 12 | 31,680 |
| MinGRUCell (no U)           | 2 | 1 | 6  | 12,928 |
| MinLSTMCell (no U)          | 3 | 1 | 9  | 19,392 |
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from grubench.models.cells import Cell
from grubench.models.layers import Recurrent


@dataclass(frozen=True)
class Structure:
    """What the counts of one recurrent stack depend on."""

    blocks: int
    biases: int
    pointwise: int
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    recurrent: bool = True      # False: no recurrent matrices (the minimal RNNs)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_input(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.directions * self.hidden_size

    def matrix_columns(self, layer: int) -> int:
        """Columns of the matrices a unit's gate multiplies: F + H, or F without recurrent ones."""
        return self.layer_input(layer) + (self.hidden_size if self.recurrent else 0)


# torch's fused layers as (blocks, biases, pointwise); their equations are those of the twin cells
FUSED = {"RNN_TANH": (1, 2, 2), "RNN_RELU": (1, 2, 2), "GRU": (3, 2, 11), "LSTM": (4, 2, 13)}


def structure(module: nn.Module) -> Structure:
    """The structure of torch's nn.RNN / nn.GRU / nn.LSTM or of a `Recurrent` stack."""
    if isinstance(module, Recurrent):
        cell: Cell = module.cells[0]
        return Structure(cell.blocks, cell.biases, cell.pointwise, module.input_size, module.hidden_size,
                         module.num_layers, module.bidirectional, cell.recurrent)
    if isinstance(module, nn.RNNBase) and module.mode in FUSED:
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM projections (proj_size > 0) are not counted")
        blocks, biases, pointwise = FUSED[module.mode]
        return Structure(blocks, biases if module.bias else 0, pointwise, module.input_size, module.hidden_size,
                         module.num_layers, module.bidirectional)
    raise ValueError(f"no closed-form counts for {type(module).__name__}")


def cell_parameters(blocks: int, biases: int, input_size: int, hidden_size: int, recurrent: bool = True) -> int:
    """G H (F + H) + biases G H (G H F + biases G H without recurrent matrices): one layer, one direction."""
    G, H, F = blocks, hidden_size, input_size
    return G * H * (F + (H if recurrent else 0)) + biases * G * H


def cell_flops(blocks: int, biases: int, pointwise: int, input_size: int, hidden_size: int,
               recurrent: bool = True) -> int:
    """2 G H (F + H) + biases G H + pointwise H (F + H -> F without recurrent matrices): one layer,
    one direction, one time step."""
    G, H, F = blocks, hidden_size, input_size
    return 2 * G * H * (F + (H if recurrent else 0)) + biases * G * H + pointwise * H


def layer_parameters(s: Structure) -> list[int]:
    """Parameters of each layer, both directions together."""
    return [s.directions * cell_parameters(s.blocks, s.biases, s.layer_input(layer), s.hidden_size, s.recurrent)
            for layer in range(s.num_layers)]


def parameters(s: Structure) -> int:
    """Parameters of the whole stack."""
    return sum(layer_parameters(s))


def matmul_flops(s: Structure) -> int:
    """The matrix-product part of `flops` (what torch.utils.flop_counter counts)."""
    return sum(s.directions * 2 * s.blocks * s.hidden_size * s.matrix_columns(layer) for layer in range(s.num_layers))


def flops(s: Structure) -> int:
    """Forward FLOPs of the whole stack per time step, for one sequence."""
    return sum(s.directions * cell_flops(s.blocks, s.biases, s.pointwise, s.layer_input(layer), s.hidden_size,
                                         s.recurrent)
               for layer in range(s.num_layers))
