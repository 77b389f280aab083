"""The minimal GRU and LSTM of Feng et al. 2024 ("Were RNNs All We Needed?", arXiv 2410.01201):
gates that read the input only, so that a whole sequence runs as a parallel scan over time.

minGRU, blocks z, h (weight_ih [2H, F], bias [2H]; 2H F + 2H parameters):

    z_t  = sigmoid(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

minLSTM, blocks f, i, h (weight_ih [3H, F], bias [3H]; 3H F + 3H parameters):

    f_t  = sigmoid(W_f x_t + b_f)          i_t = sigmoid(W_i x_t + b_i)
    h~_t = g(W_h x_t + b_h)
    f'_t = f_t / (f_t + i_t)               i'_t = i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t

with g(a) = a + 1/2 for a >= 0 and sigmoid(a) for a < 0: the paper's log-space version (its
appendix), which keeps h~ > 0 so that every term of the scan has a logarithm. Both modes here
use g, so the loop and the scan are the same function.

Every step is h_t = a_t * h_{t-1} + b_t with a_t, b_t from the input alone, so

    h_t = A_t h_0 + A_t sum_{k <= t} b_k / A_k,        A_t = a_1 a_2 ... a_t

and in logarithms (the paper's appendix; a*_t = sum_{k <= t} log a_k):

    h_t = exp(a*_t) h_0 + exp(a*_t + logcumsumexp_k(log b_k - a*_k))

`logcumsumexp` keeps this finite for long sequences, where A_t underflows. The logarithms come
straight from the pre-activations without forming the gates:

    minGRU:   log a = log(1 - z) = -softplus(k_z)        log z = -softplus(-k_z)
    minLSTM:  d = softplus(-k_f) - softplus(-k_i)        log f' = -softplus(d), log i' = -softplus(-d)
    both:     log g(a) = log(a + 1/2) for a >= 0, -softplus(-a) for a < 0

The h_0 term stays outside the logarithms, so an initial state may have any sign; the default
h_0 = 0 drops it. Sequences of unequal length stop at their ends: past it a_t = 1, b_t = 0
(`scan`'s `keep`). `Recurrent(..., parallel=True)` runs `scan`; parallel=False runs `step` one
time step at a time (the form for generation, and the check that the scan is right).

`pointwise` counts the sequential equations' elementwise operations per unit, as every cell:
minGRU 6 (sigmoid, g, 1 - z, two products, a sum), minLSTM 9 (two sigmoids, g, f + i, two
divisions, two products, a sum). The scan does a few more, but no matrix product besides the
input projection, which is the only one `grubench.models.counting` counts.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from grubench.models.cells import Cell


def g(a: torch.Tensor) -> torch.Tensor:
    """a + 1/2 for a >= 0, sigmoid(a) for a < 0: continuous, positive, increasing."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def log_g(a: torch.Tensor) -> torch.Tensor:
    """log g(a), without forming g(a) where it is tiny."""
    return torch.where(a >= 0, torch.log(F.relu(a) + 0.5), -F.softplus(-a))


def scan_log(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 1..T in parallel, from log a_t and log b_t [B, T, H] (a_t,
    b_t > 0) and h_0 [B, H] (None: zeros). Returns h_1..h_T [B, T, H]."""
    a_star = log_a.cumsum(dim=1)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.unsqueeze(1)
    return h


class MinimalCell(Cell):
    """Base of the minimal cells: no recurrent weights; `coefficients` gives each step's
    log a_t and log b_t of h_t = a_t h_{t-1} + b_t from its projection."""

    recurrent = False

    def recurrent_weights(self) -> tuple[torch.Tensor, ...]:
        return ()

    def coefficients(self, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xp [..., G*H] -> (log a, log b), each [..., H]."""
        raise NotImplementedError

    def terms(self, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xp [..., G*H] -> (a, b), each [..., H], computed as `step` computes them (the CPU
        kernel's input, `grubench.models.cpu_kernels.linear_recurrence`)."""
        raise NotImplementedError

    def step(self, xp, h):
        a, b = self.terms(xp)
        return a * h + b

    def scan(self, xp: torch.Tensor, h0: torch.Tensor | None = None,
             keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole sequence at once: xp [B, T, G*H], h_0 [B, H] (None: zeros)
        -> (h_1..h_T [B, T, H], h_T [B, H]).

        `keep` [B, T, 1] bool marks the real steps of sequences of unequal length: at the others
        a_t = 1 and b_t = 0, so h stays as it was (the final state is the one after the last real
        step), and the output there is 0."""
        log_a, log_b = self.coefficients(xp)
        if keep is None:
            out = scan_log(log_a, log_b, h0=h0)
            return out, out[:, -1]
        # log b = the dtype's most negative number, not -inf: a prefix of -inf (the backward
        # direction starts in the padding) would make logcumsumexp's gradient NaN.
        log_a = log_a.masked_fill(~keep, 0.0)
        log_b = log_b.masked_fill(~keep, torch.finfo(log_b.dtype).min)
        out = scan_log(log_a, log_b, h0=h0)
        return out.masked_fill(~keep, 0.0), out[:, -1]


class MinGRUCell(MinimalCell):
    """minGRU (Feng et al. 2024): h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t + b_h),
    z_t = sigmoid(W_z x_t + b_z). Blocks z, h: weight_ih [2H, F], bias [2H]; 2H F + 2H parameters.
    See the module docstring for the scan."""

    blocks, biases = 2, 1
    pointwise = 6           # sigmoid, g, 1 - z, (1 - z) h, z h~, +

    def terms(self, xp):
        k_z, k_h = xp.chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        return 1 - z, z * g(k_h)

    def coefficients(self, xp):
        k_z, k_h = xp.chunk(2, dim=-1)
        return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)


class MinLSTMCell(MinimalCell):
    """minLSTM (Feng et al. 2024): h_t = f'_t h_{t-1} + i'_t g(W_h x_t + b_h), with
    f' = f / (f + i), i' = i / (f + i), f_t = sigmoid(W_f x_t + b_f), i_t = sigmoid(W_i x_t + b_i).
    Blocks f, i, h: weight_ih [3H, F], bias [3H]; 3H F + 3H parameters. No cell state besides h."""

    blocks, biases = 3, 1
    pointwise = 9           # 2 sigmoid, g, f + i, 2 divisions, f' h, i' h~, +

    def terms(self, xp):
        k_f, k_i, k_h = xp.chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(k_h)

    def coefficients(self, xp):
        k_f, k_i, k_h = xp.chunk(3, dim=-1)
        d = F.softplus(-k_f) - F.softplus(-k_i)
        return -F.softplus(d), -F.softplus(-d) + log_g(k_h)
