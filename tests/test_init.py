"""model.init: torch's initialisation (the default, unchanged) and Keras 3's (`keras_init`):
Glorot-uniform input kernels and dense layers, orthogonal recurrent kernels, zero biases, the
forget gate's bias 1 unless the model chose another (chrono), JANET's chrono kept."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from grubench.config import build, model_config
from grubench.errors import ConfigError
from grubench.spec import TaskSpec

MODELS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "model").glob("[!_]*.yaml"))
H, F, T = 32, 5, 40
# the forget gate's block in the main bias vector of each model with one (torch's order i, f, g, o;
# the cells list theirs in `gates`)
FORGET_BLOCK = {"lstm": 1, "lstm_fb1": 1, "lstm_loop": 1, "lstm_eq": 1, "lstm_nig": 0, "lstm_nog": 1}
CHRONO = {"lstm_chrono", "lstm_eq_chrono", "janet"}


def model(name: str, init: str, layers: int = 1, seed: int = 0):
    task = TaskSpec(name="t", input_kind="real", input_size=F, output="regression", num_outputs=1, seq_len=T,
                    metric="mse", chance={})
    torch.manual_seed(seed)
    config = model_config(name, [f"model.hidden_size={H}", f"model.num_layers={layers}", f"model.init={init}"])
    return build(config.model, "model", task=task)


def recurrent_parameters(net):
    return {name: p.detach() for name, p in net.recurrent.named_parameters()}


@pytest.mark.parametrize("name", MODELS)
def test_keras_init_gives_glorot_input_kernels_orthogonal_recurrent_kernels_and_zero_biases(name):
    net = model(name, "keras", layers=2)
    for key, weight in recurrent_parameters(net).items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf.startswith("weight_hh"):  # [G*H, H]: orthonormal columns
            torch.testing.assert_close(weight.T @ weight, torch.eye(H), atol=1e-5, rtol=0)
        elif leaf.startswith("weight_ih"):  # [G*H, fan_in]
            fan_out, fan_in = weight.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert weight.abs().max() <= bound
            assert weight.var().item() == pytest.approx(bound ** 2 / 3, rel=0.15)  # U(-a, a): a^2 / 3
    head = net.head.weight.detach()
    assert head.abs().max() <= math.sqrt(6 / sum(head.shape)) and not net.head.bias.any()

    biases = torch.cat([p for key, p in recurrent_parameters(net).items() if key.rsplit(".", 1)[-1].startswith("bias")])
    if name in FORGET_BLOCK:  # b_f = 1 (unit_forget_bias), every other bias 0
        for key, bias in recurrent_parameters(net).items():
            leaf = key.rsplit(".", 1)[-1]
            if leaf.startswith("bias_hh"):
                assert not bias.any(), key
            elif leaf.startswith("bias"):
                k = FORGET_BLOCK[name]
                assert torch.equal(bias[k * H:(k + 1) * H], torch.ones(H)), key
                assert not torch.cat([bias[:k * H], bias[(k + 1) * H:]]).any(), key
    elif name in CHRONO:  # the forget bias log U[1, T], the authors' initialisation, kept
        assert biases.abs().max() <= math.log(T) + 1e-6 and biases.max() > 1.0
    else:
        assert not biases.any(), name


@pytest.mark.parametrize("name", ["gru", "lstm", "janet", "lstm_eq"])
def test_torch_init_is_the_layers_own(name):
    """model.init=torch changes nothing: the same parameters as a model built without the option."""
    ours = model(name, "torch")
    task = ours.task
    torch.manual_seed(0)
    plain = build(model_config(name, [f"model.hidden_size={H}"]).model, "model", task=task)
    for (key, a), (_, b) in zip(ours.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), key
    assert not torch.equal(ours.state_dict()[next(iter(ours.state_dict()))],
                           model(name, "keras").state_dict()[next(iter(ours.state_dict()))])


def test_keras_init_keeps_a_chosen_forget_bias():
    """lstm_chrono with Keras's weights: its chrono gate biases (b_i = -b_f) stay, not b_f = 1."""
    net = model("lstm_chrono", "keras")
    b_ih = net.recurrent.bias_ih_l0.detach()
    forget, input_gate = b_ih[H:2 * H], b_ih[:H]
    assert (forget >= 0).all() and forget.max() <= math.log(T - 1) + 1e-6 and not torch.equal(forget, torch.ones(H))
    torch.testing.assert_close(input_gate, -forget)
    assert not net.recurrent.bias_hh_l0.any()


def test_an_unknown_init_is_refused():
    with pytest.raises(ConfigError, match="init must be 'torch' or 'keras', got 'jax'"):
        model("gru", "jax")
