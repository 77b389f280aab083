"""`GRU`, `LSTM` and `RNN`: torch.nn.GRU, torch.nn.LSTM and torch.nn.RNN whose training on a CPU
runs grubench's kernels (cpu_kernels.cpp); `lstm`, `janet` and `linear_recurrence`, the kernels
`Recurrent` runs the LSTM cells, JANET and the minimal RNNs on (models/fused.py).

The equations are torch's (GRU gate blocks r, z, n, the reset gate after the recurrent matmul;
LSTM gate blocks i, f, g, o; the RNN with tanh), and JANETCell's (cells.py):

    GRU   r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
          z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
          n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
          h_t = (1 - z_t) * n_t + z_t * h_{t-1}                      x [B, T, F], h [B, H]
    LSTM  [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
          c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    RNN   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

Why kernels: on a CPU torch.gru and torch.rnn_tanh are loops of small ATen operations, each
recorded by autograd and each a pass over memory (a GRU layer's forward and backward at batch
64, T = 100, H = 128, one thread: about 67 ms), and oneDNN's GRU and RNN, which would be faster,
are not reachable from torch (only its LSTM is; the kernel here is faster than it at the small
studies' sizes). A kernel computes every step's input terms in one matmul, one matmul per step
forward and one backward (MKL, as torch's), the elementwise work in one vectorised pass per step,
the backward pass through time written out (cpu_kernels.cpp gives its equations) and the
weights' gradients in one matmul each at the end: about 30 ms for the same GRU (docs/models.md
has the tables). Values and gradients equal torch's layers within float32 rounding
(tests/test_cpu_kernels.py: 1e-5; float64: 1e-12).

It is compiled once per machine, torch version and source (torch.utils.cpp_extension, with the
C++ compiler torch's extensions use, about 40 s) into ~/.cache/grubench (or $XDG_CACHE_HOME);
one process builds while the others wait. Where it cannot be built (no compiler) or cannot run
(a GPU, autocast, half precision, packed sequences of unequal length, unbatched input, an RNN
with relu, an LSTM with a projection), the layer runs torch's own; `impl` chooses, and `last_impl` says which ran
("kernel" or "fused"; a run records it as the tag model/impl).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from pathlib import Path

import filelock
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from grubench.errors import first_line

log = logging.getLogger("grubench")

IMPLS = ("auto", "kernel", "fused")
SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
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
    return "grubench_cpu_kernels_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@functools.cache
def extension():
    """The compiled kernels (built on first use), or a string saying why they cannot be had."""
    try:
        from torch.utils import cpp_extension

        name = _build_name()
        build = _cache_dir() / name
        build.mkdir(parents=True, exist_ok=True)
        # One builder at a time, under a lock the system releases if its holder dies; torch's own
        # lock file, left by a builder that was killed, would make every later load wait forever.
        with filelock.FileLock(str(build) + ".lock"):
            (build / "lock").unlink(missing_ok=True)
            # Built from a copy inside its folder: the same source from another checkout is the
            # same build (ninja rebuilds whenever a source's path changes).
            source = build / SOURCE.name
            if not source.exists():
                shutil.copyfile(SOURCE, source)
            if not any(build.glob("*.so")):
                log.warning("building grubench's CPU kernels: GRU, RNN, JANET, minimal RNNs (once per machine and "
                            "torch version, about 40 s)")
            return cpp_extension.load(name, [str(source)], extra_cflags=FLAGS, build_directory=str(build),
                                      verbose=False)
    except Exception as error:  # no compiler, a failed build: torch's layers run instead
        why = f"it could not be built ({first_line(error)[:200]})"
        log.warning("grubench's CPU kernels: %s; torch's GRU and RNN (and the step loops) run instead", why)
        return why


class _GRULayer(torch.autograd.Function):
    """One GRU layer, one direction: (x [B, T, F], h0 [B, H], w_ih, w_hh, b_ih, b_hh, zero_h0:
    h0 is zeros) -> the states h_1 .. h_T, [T, B, H] (time first); backward through time in the
    kernel."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, zero_h0):
        states, gates, ghn = extension().gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, zero_h0)
        ctx.save_for_backward(x, w_ih, w_hh, states, gates, ghn)
        ctx.zero_h0 = zero_h0
        return states[1:]

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, states, gates, ghn = ctx.saved_tensors
        grads = extension().gru_backward(grad.contiguous(), x, w_ih, w_hh, states, gates, ghn,
                                         *ctx.needs_input_grad[:2], ctx.zero_h0)
        return (*grads, None)


class _RNNLayer(torch.autograd.Function):
    """One RNN (tanh) layer, one direction, as `_GRULayer`."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, zero_h0):
        states = extension().rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, zero_h0)
        ctx.save_for_backward(x, w_ih, w_hh, states)
        ctx.zero_h0 = zero_h0
        return states[1:]

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, states = ctx.saved_tensors
        grads = extension().rnn_backward(grad.contiguous(), x, w_ih, w_hh, states, *ctx.needs_input_grad[:2],
                                         ctx.zero_h0)
        return (*grads, None)


class _LSTMLayer(torch.autograd.Function):
    """One LSTM layer, one direction: (x [B, T, F], h0 [B, H], c0 [B, H], w_ih, w_hh, b_ih, b_hh,
    zero_h0: h0 and c0 are zeros) -> (h_1 .. h_T [T, B, H] (time first), c_T [B, H])."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, zero_h0):
        hs, cs, gates, tanh_c = extension().lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, zero_h0)
        ctx.save_for_backward(x, w_ih, w_hh, hs, cs, gates, tanh_c)
        ctx.zero_h0 = zero_h0
        return hs[1:], cs[-1]

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        x, w_ih, w_hh, hs, cs, gates, tanh_c = ctx.saved_tensors
        need_dx, need_dh0, need_dc0 = ctx.needs_input_grad[:3]
        grads = extension().lstm_backward(grad_h.contiguous(), grad_c.contiguous(), x, w_ih, w_hh, hs, cs, gates,
                                          tanh_c, need_dx, need_dh0 or need_dc0, ctx.zero_h0)
        return (*grads, None)


def lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
         b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One LSTM layer and direction on the kernel, torch's weights: x [B, T, F], h0, c0 [B, H] ->
    (outputs h_t [B, T, H], (h_T, c_T))."""
    out, c_n = _LSTMLayer.apply(x.contiguous(), h0.contiguous(), c0.contiguous(), w_ih, w_hh, b_ih, b_hh, False)
    return out.transpose(0, 1), (out[-1], c_n)


class _JANETLayer(torch.autograd.Function):
    """One layer of JANET cells (`grubench.models.JANETCell`), one direction: (x [B, T, F],
    c0 [B, H], weight_ih, weight_hh, bias, beta) -> c_1 .. c_T, [T, B, H] (time first)."""

    @staticmethod
    def forward(ctx, x, c0, w_ih, w_hh, bias, beta):
        states, gates = extension().janet_forward(x, c0, w_ih, w_hh, bias, beta)
        ctx.save_for_backward(x, w_ih, w_hh, states, gates)
        return states[1:]

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, states, gates = ctx.saved_tensors
        grads = extension().janet_backward(grad.contiguous(), x, w_ih, w_hh, states, gates, ctx.needs_input_grad[0])
        return (*grads, None)


def janet(x: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor,
          beta: float) -> torch.Tensor:
    """One JANET layer and direction on the kernel: x [B, T, F], c0 [B, H] -> outputs c_t [B, T, H]."""
    return _JANETLayer.apply(x.contiguous(), c0.contiguous(), w_ih, w_hh, bias, float(beta)).transpose(0, 1)


class _LinearRecurrence(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t for t = 1..T: (a [B, T, H], b [B, T, H], h0 [B, H]) -> h [B, T, H]."""

    @staticmethod
    def forward(ctx, a, b, h0):
        h = extension().linear_forward(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad):
        a, h, h0 = ctx.saved_tensors
        return tuple(extension().linear_backward(grad.contiguous(), a, h, h0))


def linear_recurrence(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The minimal RNNs' recurrence on the kernel, one step after another: a, b [B, T, H],
    h0 [B, H] -> h_1 .. h_T [B, T, H]."""
    return _LinearRecurrence.apply(a.contiguous(), b.contiguous(), h0.contiguous())


def why_not_here(x: torch.Tensor) -> str | None:
    """Why no kernel runs on this input here (None: they can): the device, autocast, the dtype, the build."""
    if x.device.type != "cpu":
        return f"it runs on a CPU (not {x.device.type})"
    if torch.is_autocast_enabled("cpu"):
        return "it does not run under CPU autocast"
    if x.dtype not in (torch.float32, torch.float64):
        return f"it computes in float32 or float64 (not {x.dtype})"
    built = extension()
    return built if isinstance(built, str) else None


KERNELS = {"GRU": _GRULayer, "LSTM": _LSTMLayer, "RNN_TANH": _RNNLayer}   # nn.RNNBase.mode -> its kernel
GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1}


class _KernelLayer(nn.RNNBase):
    """What `GRU`, `LSTM` and `RNN` share: torch's layer (the same arguments, parameters and results)
    that runs grubench's CPU kernel where `impl` lets it: "auto" (the kernel wherever it runs,
    torch's layer elsewhere), "kernel" (the kernel, or one clear error where it cannot run) or
    "fused" (torch's layer always: cuDNN on a GPU, ATen's loop on a CPU)."""

    def _init_impl(self, impl: str) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        self.impl = impl
        self.last_impl: str | None = None

    def why_not_kernel(self, input) -> str | None:
        """Why the kernel cannot run this call (None: it can)."""
        if self.impl == "fused":
            return "impl=fused"
        if self.mode not in KERNELS:
            return f"it computes tanh (not {self.mode.lower()})"
        if isinstance(input, PackedSequence):
            return "it takes sequences of equal length (not packed ones)"
        if input.dim() != 3:
            return "it takes batched input [B, T, F]"
        if self.proj_size:
            return "it has no projection (proj_size)"
        return why_not_here(input)

    def forward(self, input, hx=None):
        problem = self.why_not_kernel(input)
        if problem is not None:
            if self.impl == "kernel":
                raise RuntimeError(f"impl=kernel: grubench's CPU kernel cannot run here: {problem}")
            self.last_impl = "fused"
            return super().forward(input, hx)
        self.last_impl = "kernel"
        kernel = KERNELS[self.mode]
        x = input if self.batch_first else input.transpose(0, 1)
        B, D, H = x.shape[0], 2 if self.bidirectional else 1, self.hidden_size
        lstm = self.mode == "LSTM"
        zero_h0 = hx is None
        if hx is None:
            zeros = x.new_zeros(self.num_layers * D, B, H)
            hx = (zeros, zeros) if lstm else zeros
        else:
            self.check_forward_args(input, hx, None)
        h0s, c0s = hx if lstm else (hx, None)
        finals, final_cells = [], []
        for index in range(self.num_layers):
            outputs = []
            for direction in range(D):
                suffix = f"_l{index}" + ("_reverse" if direction else "")
                weights = [getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")]
                zero = x.new_zeros(GATES[self.mode] * H)
                biases = ([getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")] if self.bias
                          else [zero, zero])
                seq = (x.flip(1) if direction else x).contiguous()
                k = index * D + direction
                if lstm:
                    out, c_n = kernel.apply(seq, h0s[k].contiguous(), c0s[k].contiguous(), *weights, *biases, zero_h0)
                    final_cells.append(c_n)
                else:
                    out = kernel.apply(seq, h0s[k].contiguous(), *weights, *biases, zero_h0)
                out = out.transpose(0, 1)
                finals.append(out[:, -1])
                outputs.append(out.flip(1) if direction else out)
            x = torch.cat(outputs, dim=-1) if D == 2 else outputs[0]
            if self.dropout and self.training and index < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        out = x if self.batch_first else x.transpose(0, 1)
        return out, ((torch.stack(finals), torch.stack(final_cells)) if lstm else torch.stack(finals))


class GRU(_KernelLayer, nn.GRU):
    """torch.nn.GRU on grubench's CPU kernel where `impl` lets it (`_KernelLayer`)."""

    def __init__(self, *args, impl: str = "auto", **kwargs):
        nn.GRU.__init__(self, *args, **kwargs)
        self._init_impl(impl)



class LSTM(_KernelLayer, nn.LSTM):
    """torch.nn.LSTM on grubench's CPU kernel where `impl` lets it and it has no projection
    (`_KernelLayer`)."""

    def __init__(self, *args, impl: str = "auto", **kwargs):
        nn.LSTM.__init__(self, *args, **kwargs)
        self._init_impl(impl)


class RNN(_KernelLayer, nn.RNN):
    """torch.nn.RNN on grubench's CPU kernel where `impl` lets it and the nonlinearity is tanh
    (`_KernelLayer`)."""

    def __init__(self, *args, impl: str = "auto", **kwargs):
        nn.RNN.__init__(self, *args, **kwargs)
        self._init_impl(impl)

