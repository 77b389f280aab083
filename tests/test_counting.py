"""Closed-form parameter counts and FLOPs per step against instantiated modules."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from grubench.models import (
    FusedLSTM,
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
    SequenceModel,
    TorchGRUCell,
    TorchLSTMCell,
    TorchRNNCell,
    counting,
)
from grubench.spec import TaskSpec

CELLS = [GRUCell, functools.partial(JANETCell, t_max=50), LSTMCell, LSTMNoForgetCell, LSTMNoInputCell,
         LSTMNoOutputCell, LSTMCoupledCell, TorchRNNCell, TorchGRUCell, TorchLSTMCell, MinGRUCell, MinLSTMCell,
         functools.partial(LSTMCell, forget_bias=1.0)]
FUSED = [nn.RNN, nn.GRU, nn.LSTM, functools.partial(nn.RNN, nonlinearity="relu"),
         functools.partial(FusedLSTM, forget_bias=1.0, impl="fused")]   # torch's: grubench's skips a zero state's products
SHAPES = [(1, False), (3, False), (1, True), (2, True)]  # (num_layers, bidirectional)


def name(factory) -> str:
    if isinstance(factory, functools.partial):
        return factory.func.__name__ + "-" + "-".join(map(str, factory.keywords.values()))
    return factory.__name__


CASES = [(c, False) for c in CELLS] + [(f, True) for f in FUSED]
IDS = [name(f) for f, _ in CASES]


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(factory, num_layers, bidirectional, fused):
    if fused:
        return factory(7, 6, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    # the step loop: the counts are the equations' (on the fused LSTM kernel a three-gate ablation
    # also multiplies its constant fourth gate)
    return Recurrent(factory, 7, 6, num_layers=num_layers, bidirectional=bidirectional, impl="loop")


@pytest.mark.parametrize("num_layers, bidirectional", SHAPES)
@pytest.mark.parametrize("factory, fused", CASES, ids=IDS)
def test_closed_form_parameters_match_the_module_per_layer_and_in_total(factory, fused, num_layers, bidirectional):
    module = build(factory, num_layers, bidirectional, fused)
    s = counting.structure(module)
    assert counting.parameters(s) == numel(module)
    per_layer = counting.layer_parameters(s)
    assert len(per_layer) == num_layers
    for layer, expected in enumerate(per_layer):
        if fused:
            actual = sum(p.numel() for n, p in module.named_parameters() if n.split("_l")[1].split("_")[0] == str(layer))
        else:
            D = s.directions
            actual = sum(numel(cell) for cell in module.cells[layer * D:(layer + 1) * D])
        assert actual == expected, f"layer {layer}"


@pytest.mark.parametrize("num_layers, bidirectional", SHAPES)
@pytest.mark.parametrize("factory, fused", CASES, ids=IDS)
def test_matmul_flops_per_step_match_torch_flop_counter(factory, fused, num_layers, bidirectional):
    module = build(factory, num_layers, bidirectional, fused)
    B, T = 3, 5
    counter = FlopCounterMode(display=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), counter:  # oneDNN's fused LSTM hides its matmuls
            module(torch.randn(B, T, 7))
    assert counter.get_total_flops() == B * T * counting.matmul_flops(counting.structure(module))


def test_the_documents_keras_numbers_for_input_100_and_64_units():
    """docs/claims.md: Keras GRU(reset_after=False) 31,680, torch GRU 31,872, Keras LSTM 42,240,
    torch LSTM 42,496, Keras SimpleRNN 10,560 (one bias), torch RNN 10,624."""
    def count(factory, fused=False):
        module = factory(100, 64) if fused else Recurrent(factory, 100, 64)
        return numel(module)

    assert count(GRUCell) == 31_680
    assert count(TorchGRUCell) == count(nn.GRU, fused=True) == 31_872
    assert count(LSTMCell) == 42_240
    assert count(TorchLSTMCell) == count(nn.LSTM, fused=True) == 42_496
    assert count(TorchRNNCell) == count(nn.RNN, fused=True) == 10_624
    assert counting.cell_parameters(blocks=1, biases=1, input_size=100, hidden_size=64) == 10_560


def test_flops_per_step_closed_form_for_one_gru_layer():
    # 2 * 3H(F + H) matmul + 3H bias adds + 11H elementwise, F = 100, H = 64
    s = counting.structure(Recurrent(GRUCell, 100, 64))
    assert counting.flops(s) == 2 * 3 * 64 * 164 + 3 * 64 + 11 * 64 == 63_872
    # torch's GRU: the same equations' count plus a second bias per gate
    assert counting.flops(counting.structure(nn.GRU(100, 64))) == 63_872 + 3 * 64


def test_every_cell_class_declares_its_structure():
    for factory in CELLS:
        cell = factory(4, 5)
        assert cell.blocks * 5 == cell.weight_ih.shape[0]
        assert cell.blocks * 5 == cell.weight_hh.shape[0] if cell.recurrent else not hasattr(cell, "weight_hh")
        assert cell.biases == sum(1 for n, _ in cell.named_parameters() if n.startswith("bias"))
        assert cell.pointwise > 0


def test_sequence_model_logs_closed_form_counts():
    task = TaskSpec(name="t", input_kind="real", input_size=3, output="regression", num_outputs=1,
                    seq_len=20, metric="mse", chance={"mse": 1.0})
    model = SequenceModel(task, functools.partial(Recurrent, cell=JANETCell), hidden_size=8, num_layers=2)
    counts = model.parameter_counts()
    s = counting.structure(model.recurrent)
    assert model.recurrent.cells[0].t_max == 20  # the task's sequence length reached the cell
    assert counts["params/recurrent"] == counting.parameters(s) == numel(model.recurrent)
    assert counts["params/total"] == numel(model) == counting.parameters(s) + 8 + 1
    assert counts["flops/step"] == counting.flops(s)

    fused = SequenceModel(task, nn.LSTM, hidden_size=8)
    assert fused.parameter_counts()["flops/step"] == counting.flops(counting.structure(fused.recurrent))


def test_unknown_recurrent_layers_have_no_closed_form():
    with pytest.raises(ValueError, match="no closed-form counts"):
        counting.structure(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="proj_size"):
        counting.structure(nn.LSTM(3, 8, proj_size=4))
