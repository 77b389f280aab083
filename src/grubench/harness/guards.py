"""Failures the user fixes with one setting: the message names it.

Out of memory: PyTorch raises `torch.OutOfMemoryError` on a GPU and a RuntimeError ("not enough
memory", "can't allocate memory") on the CPU. The memory a recurrent net trains in grows with

    batch_size x seq_len x hidden_size x num_layers      (activations kept for backpropagation)
    hidden_size^2 x num_layers                           (weights, gradients, optimiser state)

so the message names those settings, with their values, batch size first (it changes the
result least).
"""

from __future__ import annotations

from omegaconf import DictConfig

MARKERS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def out_of_memory(error: BaseException) -> bool:
    return any(marker in str(error).lower() for marker in MARKERS)


def out_of_memory_message(cfg: DictConfig, building: bool = False) -> str:
    """"out of memory ...: lower dataset.batch_size (now 128), ..." for the settings `cfg` has."""
    settings = [("model.hidden_size", cfg.get("model", {}).get("hidden_size")),
                ("model.num_layers", cfg.get("model", {}).get("num_layers"))]
    if not building:
        settings = [("dataset.batch_size", cfg.dataset.get("batch_size")), *settings,
                    ("dataset.seq_len", cfg.dataset.get("seq_len"))]
    named = ", ".join(f"{key} (now {value})" for key, value in settings if value is not None)
    where = "building the model" if building else "training"
    advice = f"out of memory {where}: lower {named}"
    if not building and str(cfg.trainer.get("precision", "")).startswith("32"):
        advice += "; on a GPU, trainer.precision=16-mixed halves the activations"
    return advice
