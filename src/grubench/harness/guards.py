"""Failures the user fixes with one setting: the message names it.

Out of memory: PyTorch raises `torch.OutOfMemoryError` on a GPU and a RuntimeError ("not enough
memory", "can't allocate memory") on the CPU, numpy a MemoryError. The memory a recurrent net
trains in grows with

    batch_size x seq_len x hidden_size x num_layers      (activations kept for backpropagation)
    hidden_size^2 x num_layers                           (weights, gradients, optimiser state)

so the message names those settings, with their values, batch size first (it changes the
result least). A model whose training state cannot fit at all is refused before anything is
allocated (`check_model_fits`): allocating it first would, on a machine that overcommits memory,
swap for minutes before failing.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from grubench.errors import ConfigError

MARKERS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory",
           "unable to allocate")
# Bytes per parameter while training in float32 with Adam: weights, gradients, two moments.
TRAINING_BYTES_PER_PARAMETER = 4 * 4


def out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or any(marker in str(error).lower() for marker in MARKERS)


def free_memory_bytes(cuda: bool) -> int | None:
    """Memory free for a new model: the GPU's free memory, or the host's MemAvailable (Linux);
    None where it cannot be told."""
    if cuda:
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_data_fits(cfg: DictConfig, planned: int | None) -> None:
    """ConfigError naming the data set's size settings when making its splits (`planned` bytes,
    None: not known in advance) cannot fit in the host's free memory."""
    free = free_memory_bytes(cuda=False)
    if planned is not None and free is not None and planned > free:
        raise ConfigError(f"the data set needs about {planned / 2**30:.1f} GiB, {free / 2**30:.1f} GiB is free on "
                          "this machine: " + out_of_memory_message(cfg, "making the data").split(": ", 1)[1])


def check_model_fits(cfg: DictConfig, parameters: int, cuda: bool) -> None:
    """ConfigError naming the model's size settings when `parameters` cannot train in the free
    memory (TRAINING_BYTES_PER_PARAMETER each)."""
    needed, free = parameters * TRAINING_BYTES_PER_PARAMETER, free_memory_bytes(cuda)
    if free is not None and needed > free:
        where = "on the GPU" if cuda else "on this machine"
        raise ConfigError(f"the model's {parameters:,} parameters need about {needed / 2**30:.1f} GiB to train, "
                          f"{free / 2**30:.1f} GiB is free {where}: "
                          + out_of_memory_message(cfg, "building the model").split(": ", 1)[1])


# The settings that size each stage's memory, the one that changes the result least first.
SIZED_BY = {
    "building the model": ("model.hidden_size", "model.num_layers"),
    "making the data": ("dataset.train_size", "dataset.seq_len", "dataset.limit"),
    "training": ("dataset.batch_size", "model.hidden_size", "model.num_layers", "dataset.seq_len"),
}


def out_of_memory_message(cfg: DictConfig, stage: str = "training") -> str:
    """"out of memory training: lower dataset.batch_size (now 128), ..." for the settings of
    `stage` (a key of SIZED_BY) that `cfg` has."""
    values = [(key, OmegaConf.select(cfg, key, default=None)) for key in SIZED_BY[stage]]
    named = ", ".join(f"{key} (now {value})" for key, value in values if value is not None)
    advice = f"out of memory {stage}: lower {named}"
    if stage == "training" and str(cfg.trainer.get("precision", "")).startswith("32"):
        advice += "; on a GPU, trainer.precision=16-mixed halves the activations"
    return advice
