"""Sequences of unequal length: a padded batch with its mask gives what its sequences give one at a
time, unpadded (outputs, loss and gradients), for torch's fused layers (packed), the cell loops
and the minimal scans; equal-length batches keep the plain path."""

from __future__ import annotations

import pytest
import torch

from grubench.config import build, model_config
from grubench.models import MinGRUCell, Recurrent
from grubench.spec import TaskSpec
from grubench.task import loss_and_metric_inputs

FEATURES, CLASSES, LONGEST = 3, 4, 9
LENGTHS = [9, 4, 1, 7, 6]


def spec(output: str = "classification") -> TaskSpec:
    return TaskSpec(name="unequal", input_kind="real", input_size=FEATURES, output=output,
                    num_outputs=1 if output == "regression" else CLASSES, seq_len=LONGEST,
                    metric="mse" if output == "regression" else "acc", chance={},
                    )


def padded_batch(output: str = "classification", seed: int = 0):
    """(x [B, T, F] with garbage in the padding, y, mask [B, T]) for LENGTHS."""
    generator = torch.Generator().manual_seed(seed)
    B = len(LENGTHS)
    x = torch.randn(B, LONGEST, FEATURES, generator=generator)
    mask = torch.arange(LONGEST) < torch.tensor(LENGTHS).unsqueeze(1)
    x = torch.where(mask.unsqueeze(-1), x, torch.full_like(x, 7.0))  # the padding must not matter
    if output == "regression":
        y = torch.randn(B, generator=generator)
    elif output == "per_step_classification":
        y = torch.randint(CLASSES, (B, LONGEST), generator=generator)
    else:
        y = torch.randint(CLASSES, (B,), generator=generator)
    return x, y, mask


def model(name: str, task: TaskSpec, **options):
    torch.manual_seed(0)
    overrides = ["model.hidden_size=6", *(f"model.{k}={v}" for k, v in options.items())]
    return build(model_config(name, overrides).model, "model", task=task)


def gradients(net) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def padded_and_alone(name: str, output: str = "classification", **options):
    """(outputs, loss, gradients) of the padded batch, and the same from each sequence alone."""
    task = spec(output)
    net = model(name, task, **options)
    x, y, mask = padded_batch(output)
    out_padded = net(x, mask.sum(1))
    net.zero_grad()
    loss_padded, _ = loss_and_metric_inputs(net, task, (x, y, mask))
    loss_padded.backward()
    grads_padded = gradients(net)

    outs, losses = [], []
    net.zero_grad()
    for i, L in enumerate(LENGTHS):
        xi, yi = x[i : i + 1, :L], y[i : i + 1, :L] if output.startswith("per_step") else y[i : i + 1]
        # all_steps reads seq_len steps: a sequence alone is padded to them when it comes with its mask
        alone = (xi, yi, torch.ones(1, L, dtype=torch.bool)) if options.get("readout") == "all_steps" else (xi, yi)
        outs.append(net(xi, torch.tensor([L])) if len(alone) == 3 else net(xi))
        loss_i, _ = loss_and_metric_inputs(net, task, alone)
        losses.append(loss_i)
        weight = L / sum(LENGTHS) if output.startswith("per_step") else 1 / len(LENGTHS)
        (loss_i * weight).backward()  # the batch loss: per sequence, or per real step
    if output.startswith("per_step"):
        loss_alone = sum(l * L for l, L in zip(losses, LENGTHS)) / sum(LENGTHS)
        outs_padded = [out_padded[i, :L] for i, L in enumerate(LENGTHS)]
        outs = [o[0] for o in outs]
    else:
        loss_alone = torch.stack(losses).mean()
        outs_padded, outs = out_padded, torch.cat(outs)
    return (outs_padded, loss_padded, grads_padded), (outs, loss_alone, gradients(net))


def assert_same(padded, alone):
    (out_p, loss_p, grads_p), (out_a, loss_a, grads_a) = padded, alone
    close = dict(rtol=1e-5, atol=1e-5)
    if isinstance(out_p, list):
        for a, b in zip(out_p, out_a):
            torch.testing.assert_close(a, b, **close)
    else:
        torch.testing.assert_close(out_p, out_a, **close)
    torch.testing.assert_close(loss_p, loss_a, **close)
    assert grads_p.keys() == grads_a.keys()
    for name in grads_p:
        torch.testing.assert_close(grads_p[name], grads_a[name], **close, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "lstm_fb1", "gru_doc", "lstm_eq", "mingru", "minlstm"])
def test_a_padded_batch_equals_its_sequences_one_at_a_time(name):
    assert_same(*padded_and_alone(name))


@pytest.mark.parametrize("name", ["gru", "gru_doc", "mingru"])
def test_two_layers_both_directions_and_regression_too(name):
    assert_same(*padded_and_alone(name, "regression", num_layers=2, bidirectional=True))


@pytest.mark.parametrize("name", ["lstm", "lstm_eq", "mingru"])
def test_the_all_steps_readout_reads_zeros_at_the_padding(name):
    assert_same(*padded_and_alone(name, readout="all_steps"))


@pytest.mark.parametrize("name", ["gru", "gru_doc", "mingru"])
def test_per_step_tasks_score_real_steps_only_in_either_direction(name):
    assert_same(*padded_and_alone(name, "per_step_classification"))
    assert_same(*padded_and_alone(name, "per_step_classification", bidirectional=True))


def test_the_minimal_scan_with_lengths_equals_its_step_loop():
    torch.manual_seed(0)
    scan = Recurrent(MinGRUCell, FEATURES, 5, num_layers=2, bidirectional=True, parallel=True)
    loop = Recurrent(MinGRUCell, FEATURES, 5, num_layers=2, bidirectional=True, parallel=False)
    loop.load_state_dict(scan.state_dict())
    x, _, mask = padded_batch()
    out_scan, h_scan = scan(x, lengths=mask.sum(1))
    out_loop, h_loop = loop(x, lengths=mask.sum(1))
    torch.testing.assert_close(out_scan, out_loop, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_scan, h_loop, rtol=1e-5, atol=1e-5)
    assert (out_scan[~mask] == 0).all()


@pytest.mark.parametrize("name", ["gru_doc", "lstm_eq", "mingru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_cell_layer_state_stops_at_each_sequence_end(name, bidirectional):
    layer = model(name, spec(), num_layers=2, bidirectional=bidirectional).recurrent
    x, _, mask = padded_batch()
    out, state = layer(x, lengths=mask.sum(1))
    assert (out[~mask] == 0).all()
    for i, L in enumerate(LENGTHS):
        out_alone, state_alone = layer(x[i : i + 1, :L])
        torch.testing.assert_close(out[i : i + 1, :L], out_alone, rtol=1e-5, atol=1e-5)
        for part, part_alone in zip(*(s if isinstance(s, tuple) else (s,) for s in (state, state_alone))):
            torch.testing.assert_close(part[:, i : i + 1], part_alone, rtol=1e-5, atol=1e-5)


def test_the_fused_final_state_is_the_state_after_each_last_real_step():
    net = model("gru", spec())
    x, _, mask = padded_batch()
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, mask.sum(1), batch_first=True, enforce_sorted=False)
    _, h = net.recurrent(packed)
    for i, L in enumerate(LENGTHS):
        _, h_alone = net.recurrent(x[i : i + 1, :L])
        torch.testing.assert_close(h[:, i], h_alone[:, 0], rtol=1e-5, atol=1e-5)


def test_without_a_mask_the_model_takes_the_plain_path(monkeypatch):
    net = model("gru", spec())
    x, y, _ = padded_batch()
    called = []
    monkeypatch.setattr(net, "_recurrent_with_lengths", lambda *a: called.append(a))
    loss_and_metric_inputs(net, spec(), (x, y))
    assert called == []


def test_a_layer_that_takes_no_lengths_is_refused():
    class Plain(torch.nn.Module):
        def __init__(self, input_size, hidden_size, **_):
            super().__init__()
            self.inner = torch.nn.GRU(input_size, hidden_size, batch_first=True)

        def forward(self, x):
            return self.inner(x)

    from grubench.models import SequenceModel

    net = SequenceModel(spec(), Plain, hidden_size=4)
    x, y, mask = padded_batch()
    with pytest.raises(ValueError, match="Plain takes no sequence lengths"):
        loss_and_metric_inputs(net, spec(), (x, y, mask))
