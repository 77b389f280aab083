"""The minimal GRU and LSTM (Feng et al. 2024): the step follows the paper's equations, and the
log-space parallel scan equals the step loop in values and gradients, also where the running
product of the gates underflows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grubench.models import MinGRUCell, MinLSTMCell, Recurrent, counting
from grubench.models.minimal import g, log_g, scan_log


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_g(a):
    return np.where(a >= 0, a + 0.5, sigmoid(a))


def numpy_minimal(kind, x, weight, bias, h):
    """The paper's sequential equations in float64 NumPy: x [B, T, F], h [B, H] -> [B, T, H]."""
    blocks = np.split(x @ weight.T + bias, 2 if kind == "mingru" else 3, axis=-1)
    outputs = []
    for t in range(x.shape[1]):
        if kind == "mingru":
            k_z, k_h = (b[:, t] for b in blocks)
            z = sigmoid(k_z)
            h = (1 - z) * h + z * numpy_g(k_h)
        else:
            k_f, k_i, k_h = (b[:, t] for b in blocks)
            f, i = sigmoid(k_f), sigmoid(k_i)
            h = f / (f + i) * h + i / (f + i) * numpy_g(k_h)
        outputs.append(h)
    return np.stack(outputs, 1)


CELLS = {"mingru": MinGRUCell, "minlstm": MinLSTMCell}


def pair(kind, dtype=torch.float64, **kwargs):
    """The same weights as a scan layer and as a loop layer."""
    scan = Recurrent(CELLS[kind], 5, 8, parallel=True, **kwargs).to(dtype)
    loop = Recurrent(CELLS[kind], 5, 8, parallel=False, **kwargs).to(dtype)
    loop.load_state_dict(scan.state_dict())
    assert scan.parallel and not loop.parallel
    return scan, loop


@pytest.mark.parametrize("kind", CELLS)
def test_step_follows_the_papers_equations(kind):
    torch.manual_seed(0)
    scan, loop = pair(kind)
    x = torch.randn(3, 30, 5, dtype=torch.float64) * 2
    h0 = torch.randn(1, 3, 8, dtype=torch.float64)
    cell = loop.cells[0]
    weight, bias = cell.weight_ih.detach().numpy(), cell.bias.detach().numpy()
    expected = numpy_minimal(kind, x.numpy(), weight, bias, h0[0].numpy())
    for layer in (loop, scan):
        out, h_n = layer(x, h0)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(h_n[0].detach().numpy(), expected[:, -1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("dtype, tolerance, grad_tolerance", [(torch.float64, 1e-11, 1e-11),
                                                              (torch.float32, 1e-5, 3e-5)])
def test_scan_equals_loop_in_values_and_gradients(kind, dtype, tolerance, grad_tolerance):
    """float32 gradients summed over 40 steps and 4 sequences in another order differ by ~1e-5
    of their size; float64 shows that the two are the same function."""
    torch.manual_seed(0)
    scan, loop = pair(kind, dtype, num_layers=2, bidirectional=True)
    x = torch.randn(4, 40, 5, dtype=dtype)
    h0 = torch.randn(4, 4, 8, dtype=dtype)
    x_scan, x_loop = x.clone().requires_grad_(), x.clone().requires_grad_()
    h_scan, h_loop = h0.clone().requires_grad_(), h0.clone().requires_grad_()
    out_scan, final_scan = scan(x_scan, h_scan)
    out_loop, final_loop = loop(x_loop, h_loop)
    torch.testing.assert_close(out_scan, out_loop, rtol=0, atol=tolerance)
    torch.testing.assert_close(final_scan, final_loop, rtol=0, atol=tolerance)

    weights = torch.randn_like(out_scan)
    ((out_scan * weights).sum() + final_scan.pow(2).sum()).backward()
    ((out_loop * weights).sum() + final_loop.pow(2).sum()).backward()
    grads = [(x_scan.grad, x_loop.grad), (h_scan.grad, h_loop.grad)]
    grads += [(a.grad, b.grad) for a, b in zip(scan.parameters(), loop.parameters(), strict=True)]
    for a, b in grads:
        assert b.abs().max() > 1e-3  # the gradient reaches it
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= grad_tolerance * scale


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 5e-4)])
def test_scan_stays_finite_where_the_gates_product_underflows(kind, dtype, tolerance):
    """2,000 steps of a gate that keeps ~0.4 of the state each step: the running product a_1..a_t
    is ~exp(-1900), zero in float32 and float64, yet the log-space scan matches the loop. In
    float32 it loses about |sum log a| x 6e-8 (here ~1e-4) absolute, as the paper's form does:
    h = exp(a* + logcumsumexp(log b - a*)) adds two numbers of size |a*| that nearly cancel."""
    torch.manual_seed(0)
    scan, loop = pair(kind, dtype)
    with torch.no_grad():
        scan.cells[0].bias[:8] = 0.5 if kind == "mingru" else -0.5  # minGRU: z; minLSTM: f
    loop.load_state_dict(scan.state_dict())
    x = torch.randn(2, 2000, 5, dtype=dtype, requires_grad=True)
    out_scan, out_loop = scan(x)[0], loop(x)[0]
    assert torch.isfinite(out_scan).all()
    log_a = scan.cells[0].coefficients(scan.cells[0].project(x))[0]
    assert log_a.sum(1).max() < -1000  # the running product underflows
    torch.testing.assert_close(out_scan, out_loop, rtol=0, atol=tolerance)
    (grad,) = torch.autograd.grad(out_scan[:, -1].sum(), x)
    assert torch.isfinite(grad).all() and grad[:, -1].abs().max() > 0


def test_scan_log_is_the_linear_recurrence():
    torch.manual_seed(0)
    a, b = torch.rand(2, 9, 3, dtype=torch.float64), torch.rand(2, 9, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    h, expected = h0, []
    for t in range(9):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(scan_log(a.log(), b.log(), h0), torch.stack(expected, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(scan_log(a.log(), b.log())[:, 0], b[:, 0], rtol=0, atol=1e-12)


def test_g_is_positive_and_continuous_and_log_g_is_its_logarithm():
    a = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    assert (g(a) > 0).all()
    assert torch.allclose(g(torch.tensor([-1e-9, 0.0])), torch.tensor([0.5, 0.5], dtype=torch.float32), atol=1e-8)
    torch.testing.assert_close(log_g(a), g(a).log(), rtol=0, atol=1e-8)  # torch's softplus is linear above 20


def test_parameters_and_flops_have_no_recurrent_matrices():
    for cell, blocks, pointwise in ((MinGRUCell, 2, 6), (MinLSTMCell, 3, 9)):
        layer = Recurrent(cell, 100, 64)
        assert not hasattr(layer.cells[0], "weight_hh")
        s = counting.structure(layer)
        assert sum(p.numel() for p in layer.parameters()) == counting.parameters(s) == blocks * 64 * (100 + 1)
        assert counting.flops(s) == 2 * blocks * 64 * 100 + blocks * 64 + pointwise * 64
    assert counting.parameters(counting.structure(Recurrent(MinGRUCell, 100, 64))) == 12_928
    assert counting.parameters(counting.structure(Recurrent(MinLSTMCell, 100, 64))) == 19_392


def test_compile_of_the_scan_falls_back_to_eager_with_one_logged_line(monkeypatch, caplog):
    import logging

    from grubench.models import layers

    def failing_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("backend failed")
        return call

    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(layers, "compile_problem", lambda: None)
    torch.manual_seed(0)
    compiled = Recurrent(MinLSTMCell, 3, 4, compile=True)
    eager = Recurrent(MinLSTMCell, 3, 4)
    eager.load_state_dict(compiled.state_dict())
    x = torch.randn(2, 6, 3)
    with caplog.at_level(logging.WARNING, logger="grubench"):
        assert torch.equal(compiled(x)[0], eager(x)[0])
        compiled(x)
    (record,) = [r for r in caplog.records if "backend failed" in r.getMessage()]
    assert "the cell scan runs eagerly" in record.getMessage()
