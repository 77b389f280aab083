"""The model every run trains: input encoding -> recurrent stack -> head.

    x [B, T, F] float or [B, T] long
      -> encoding     identity, one-hot, Linear(F, E) or Embedding(V, E)     -> [B, T, E]
      -> recurrent    any layer called as recurrent(x) -> (out [B, T, D*H], state),
                      D = 2 if bidirectional else 1 (torch.nn.RNN / GRU / LSTM, or a cell loop)
      -> head         Linear(D*H, K) on the last step ([B, K]) or on every step ([B, T, K])

Sequences of unequal length come with `lengths` [B] (each sequence's real steps, the padding
after them): torch's fused layers get them packed (`pack_padded_sequence`), a `Recurrent` (cell
loops, minimal scans) stops each sequence's state at its end, and the head reads each sequence's
last real step. Without `lengths` the model runs exactly as for equal lengths, with no masking.

The recurrent layer is given as a factory (a Hydra `_partial_` target) and called with the
keyword arguments torch's fused layers take: input_size, hidden_size, num_layers, dropout,
bidirectional, batch_first=True, and seq_len=<the task's sequence length> if it takes `seq_len`
(JANET's chrono initialisation needs it). The encoding and head are decided by the task's
description, so a model knows nothing of data sets beyond `TaskSpec`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from grubench.models import counting
from grubench.models.init import INITS, keras_init
from grubench.models.layers import accepts
from grubench.spec import TaskSpec, require_positive


def recurrent_impl(layer: nn.Module) -> str:
    """The path the layer's last forward pass ran: its `last_impl` (a `Recurrent`'s "fused",
    "loop" or "scan", grubench's `GRU`'s "kernel" or "fused"), "fused" for torch's own layers,
    else the layer's class name."""
    impl = getattr(layer, "last_impl", None)
    if impl is None and isinstance(layer, nn.RNNBase):
        return "fused"
    return impl or type(layer).__name__


class OneHot(nn.Module):
    """Token ids [B, T] -> one-hot float vectors [B, T, V]; no parameters."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.one_hot(tokens, self.vocab_size).float()


class SequenceModel(nn.Module):
    """A recurrent sequence model sized for one task.

    Args:
        task: the data set's description; decides the encoding, the head and their sizes.
        recurrent: factory of the recurrent layer, e.g. `functools.partial(torch.nn.GRU)`.
        name: the model's short name, used in run names and reports ("gru", "lstm", ...).
        hidden_size: units per layer and direction (H).
        num_layers: stacked recurrent layers.
        dropout: dropout between stacked layers (torch's convention: not after the last one).
        bidirectional: run a second direction and concatenate, doubling the features to 2H.
        embed_dim: size E of a learned input encoding: Linear(F, E) for real-valued inputs,
            Embedding(V, E) for tokens. None feeds real inputs as they are and tokens one-hot,
            so every parameter of the model is in the recurrent stack and the head.
        readout: what the head reads for a whole-sequence output. "last": the state after the
            whole sequence in each direction, [B, D*H]; "all_steps": the outputs of every step
            side by side, [B, T*D*H] (the MNIST-1D paper's GRU reads its sequence this way);
            with sequences of unequal length the padded steps' outputs are zeros and the batch is
            padded with zeros to the task's `seq_len`, so a sequence gives the same output in
            any batch. Per-step tasks read every step whatever this says.
        init: "torch" (each layer's own initialisation) or "keras" (Keras 3's defaults for
            every layer: `grubench.models.init.keras_init`).
    """

    def __init__(self, task: TaskSpec, recurrent: Callable[..., nn.Module], name: str = "rnn",
                 hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, embed_dim: int | None = None, readout: str = "last",
                 init: str = "torch"):
        super().__init__()
        require_positive(hidden_size=hidden_size, num_layers=num_layers)
        if embed_dim is not None:
            require_positive(embed_dim=embed_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if readout not in ("last", "all_steps"):
            raise ValueError(f"readout must be 'last' or 'all_steps', got {readout!r}")
        if init not in INITS:
            raise ValueError(f"init must be 'torch' or 'keras', got {init!r}")
        self.name = name
        self.task = task
        self.encoding, features = self._encoding(task, embed_dim)
        extra = {"seq_len": task.seq_len} if accepts(recurrent, "seq_len") else {}
        self.recurrent = recurrent(
            input_size=features, hidden_size=hidden_size, num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional, batch_first=True, **extra,
        )
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.readout = "last" if task.per_step else readout
        features = (2 if bidirectional else 1) * hidden_size
        if self.readout == "all_steps":
            features *= task.seq_len
        self.head = nn.Linear(features, task.num_outputs)
        if init == "keras":
            keras_init(self)
        self.last_recurrent_dtype: torch.dtype | None = None
        self.last_recurrent_impl: str | None = None

    @staticmethod
    def _encoding(task: TaskSpec, embed_dim: int | None) -> tuple[nn.Module, int]:
        if task.input_kind == "tokens":
            if embed_dim is None:
                return OneHot(task.input_size), task.input_size
            return nn.Embedding(task.input_size, embed_dim), embed_dim
        if embed_dim is None:
            return nn.Identity(), task.input_size
        return nn.Linear(task.input_size, embed_dim), embed_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, F] or [B, T] -> [B, K] (after the last step) or [B, T, K] (per-step tasks);
        regression's single output is squeezed to [B].

        `lengths` [B] integers 1..T: each sequence's real steps, padded after them; None: all T.
        The outputs at padded steps of a per-step task are meaningless (the loss masks them)."""
        if lengths is not None and self.task.per_step and not self.bidirectional:
            lengths = None  # one direction: the outputs at real steps never read the padding after them
        u = self.encoding(x)
        out, _ = self.recurrent(u) if lengths is None else self._recurrent_with_lengths(u, lengths)
        self.last_recurrent_dtype = out.dtype
        self.last_recurrent_impl = recurrent_impl(self.recurrent)
        if not self.task.per_step:
            out = self._summary(out, lengths)
        y = self.head(out)
        return y.squeeze(-1) if self.task.output == "regression" else y

    def _recurrent_with_lengths(self, u: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, object]:
        """The recurrent layer on padded sequences u [B, T, E] of `lengths` [B] -> (out [B, T, D*H]
        with zeros at the padded steps, final state after each sequence's last real step)."""
        if isinstance(self.recurrent, nn.RNNBase):
            packed = pack_padded_sequence(u, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.recurrent(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=u.shape[1])
            return out, state
        if accepts(self.recurrent.forward, "lengths"):
            return self.recurrent(u, lengths=lengths)
        raise ValueError(f"{type(self.recurrent).__name__} takes no sequence lengths: "
                         "it cannot run sequences of unequal length")

    def _summary(self, out: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T, D*H] -> [B, D*H]: the state after the whole sequence in each direction (the last
        real step of the forward direction, the first step of the backward one); with the
        "all_steps" readout, [B, T*D*H] (T: the task's `seq_len`)."""
        if self.readout == "all_steps":
            if lengths is not None and out.shape[1] < self.task.seq_len:  # a batch cut to its longest sequence
                out = F.pad(out, (0, 0, 0, self.task.seq_len - out.shape[1]))
            return out.flatten(1)
        if lengths is None:
            last = out[:, -1]
        else:
            last = out[torch.arange(len(out), device=out.device), lengths.to(out.device) - 1]
        if not self.bidirectional:
            return last
        H = self.hidden_size
        return torch.cat([last[:, :H], out[:, 0, H:]], dim=-1)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the recurrent stack, and of the whole model (total, trainable); and
        `flops/step`, the recurrent stack's forward FLOPs per time step and sequence
        (`grubench.models.counting`; left out for a recurrent layer it has no formula for)."""
        counts = {
            "params/recurrent": sum(p.numel() for p in self.recurrent.parameters()),
            "params/total": sum(p.numel() for p in self.parameters()),
            "params/trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
        }
        try:
            counts["flops/step"] = counting.flops(counting.structure(self.recurrent))
        except ValueError:
            pass
        return counts
