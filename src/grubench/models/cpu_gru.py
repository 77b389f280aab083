"""`GRU`: torch.nn.GRU, whose training step on a CPU runs grubench's kernel (cpu_gru.cpp).

The equations are torch's (gate blocks r, z, n; the reset gate after the recurrent matmul):

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                  x [B, T, F], h [B, H]

Why a kernel: on a CPU torch.gru is a loop of small ATen operations, each recorded by autograd
and each a pass over memory (about 39 ms per training step at batch 64, T = 50, H = 128, one
thread), and oneDNN's GRU, which would be faster, is not reachable from torch (only its LSTM
is). The kernel computes every step's input terms in one matmul, one matmul per step forward and
one backward (MKL, as torch's), the gates' elementwise work in one pass per step, and the
backward pass through time written out (cpu_gru.cpp gives its equations), the weights' gradients
in one matmul each at the end: about 25 ms for the same step (docs/models.md has the table).
Values and gradients equal torch's GRU within float32 rounding (tests/test_cpu_gru.py: 1e-5;
float64: 1e-12).

It is compiled once per machine, torch version and source (torch.utils.cpp_extension, with the
C++ compiler torch's extensions use, about 40 s) into ~/.cache/grubench (or $XDG_CACHE_HOME);
one process builds while the others wait. Where it cannot be built (no compiler) or cannot run
(a GPU, autocast, half precision, packed sequences of unequal length, unbatched input), `GRU`
runs torch's own GRU; `impl` chooses, and `last_impl` says which ran ("kernel" or "fused"; a
run records it as the tag model/impl).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import filelock
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from grubench.errors import first_line

log = logging.getLogger("grubench")

IMPLS = ("auto", "kernel", "fused")
SOURCE = Path(__file__).with_name("cpu_gru.cpp")
FLAGS = ["-O3", "-march=native"]   # built on the machine that runs it, for its vector units


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grubench"


def _build_name() -> str:
    """A name that changes with the source, torch's version, the flags and this CPU's features
    (-march=native), so that a stale or foreign build is never loaded."""
    cpu = ""
    try:
        cpu = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    key = "\n".join([SOURCE.read_text(), torch.__version__, " ".join(FLAGS), cpu])
    return "grubench_cpu_gru_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@functools.cache
def extension():
    """The compiled kernel (built on first use), or a string saying why it cannot be had."""
    try:
        from torch.utils import cpp_extension

        name = _build_name()
        build = _cache_dir() / name
        build.mkdir(parents=True, exist_ok=True)
        # One builder at a time, under a lock the system releases if its holder dies; torch's own
        # lock file, left by a builder that was killed, would make every later load wait forever.
        with filelock.FileLock(str(build) + ".lock"):
            (build / "lock").unlink(missing_ok=True)
            if not any(build.glob("*.so")):
                log.warning("building grubench's CPU GRU kernel (once per machine and torch version, about 40 s)")
            return cpp_extension.load(name, [str(SOURCE)], extra_cflags=FLAGS, build_directory=str(build),
                                      verbose=False)
    except Exception as error:  # no compiler, a failed build: torch's GRU runs instead
        why = f"it could not be built ({first_line(error)[:200]})"
        log.warning("grubench's CPU GRU kernel: %s; torch's GRU runs instead", why)
        return why


class _Layer(torch.autograd.Function):
    """One layer, one direction: (x [B, T, F], h0 [B, H], w_ih, w_hh, b_ih, b_hh) -> the states
    h_1 .. h_T, [T, B, H] (time first); backward through time in the kernel."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        states, gates, ghn = extension().forward(x, h0, w_ih, w_hh, b_ih, b_hh)
        ctx.save_for_backward(x, w_ih, w_hh, states, gates, ghn)
        return states[1:]

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, states, gates, ghn = ctx.saved_tensors
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = extension().backward(
            grad.contiguous(), x, w_ih, w_hh, states, gates, ghn, ctx.needs_input_grad[0])
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def layer(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
          b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU layer and direction on the kernel: x [B, T, F], h0 [B, H] -> outputs [B, T, H]."""
    return _Layer.apply(x.contiguous(), h0.contiguous(), w_ih, w_hh, b_ih, b_hh).transpose(0, 1)


class GRU(nn.GRU):
    """torch.nn.GRU (the same arguments, parameters and results) that runs grubench's CPU kernel
    where `impl` lets it: "auto" (the kernel wherever it runs, torch's GRU elsewhere), "kernel"
    (the kernel, or one clear error where it cannot run) or "fused" (torch's GRU always: cuDNN
    on a GPU, ATen's loop on a CPU)."""

    def __init__(self, *args, impl: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        self.impl = impl
        self.last_impl: str | None = None

    def why_not_kernel(self, input, hx=None) -> str | None:
        """Why the kernel cannot run this call (None: it can)."""
        if self.impl == "fused":
            return "impl=fused"
        if isinstance(input, PackedSequence):
            return "it takes sequences of equal length (not packed ones)"
        if input.dim() != 3:
            return "it takes batched input [B, T, F]"
        if input.device.type != "cpu":
            return f"it runs on a CPU (not {input.device.type}); torch's GRU runs there"
        if torch.is_autocast_enabled("cpu"):
            return "it does not run under CPU autocast"
        if input.dtype not in (torch.float32, torch.float64):
            return f"it computes in float32 or float64 (not {input.dtype})"
        built = extension()
        return built if isinstance(built, str) else None

    def forward(self, input, hx=None):
        problem = self.why_not_kernel(input, hx)
        if problem is not None:
            if self.impl == "kernel":
                raise RuntimeError(f"impl=kernel: grubench's CPU GRU kernel cannot run here: {problem}")
            self.last_impl = "fused"
            return super().forward(input, hx)
        self.last_impl = "kernel"
        x = input if self.batch_first else input.transpose(0, 1)
        B, D, H = x.shape[0], 2 if self.bidirectional else 1, self.hidden_size
        if hx is None:
            hx = x.new_zeros(self.num_layers * D, B, H)
        else:
            self.check_forward_args(input, hx, None)
        finals = []
        for index in range(self.num_layers):
            outputs = []
            for direction in range(D):
                suffix = f"_l{index}" + ("_reverse" if direction else "")
                weights = [getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")]
                biases = ([getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")] if self.bias
                          else [x.new_zeros(3 * H), x.new_zeros(3 * H)])
                seq = x.flip(1) if direction else x
                out = layer(seq, hx[index * D + direction], *weights, *biases)
                finals.append(out[:, -1])
                outputs.append(out.flip(1) if direction else out)
            x = torch.cat(outputs, dim=-1) if D == 2 else outputs[0]
            if self.dropout and self.training and index < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        out = x if self.batch_first else x.transpose(0, 1)
        return out, torch.stack(finals)
