"""What each setting may hold: checks on meaning, before anything is created or heavy is imported.

Every check raises `ConfigError` with one line that starts with the setting and its value and
says what would be valid (`trainer.max_epochs=0: ...`). Types are checked too, since a command
line value such as `trainer.max_epochs=ten` composes as a string. Some checks hold for every
setting of a kind, whatever its name (`check_kinds`): an integer fits torch's int64, a number is
finite, a seed is one numpy takes. What only a built object can tell (a model's own options, a
data set's sizes, whether a model fits in memory) is checked when the run is built
(config.build, harness.guards).
"""

from __future__ import annotations

import math
from importlib import resources
from numbers import Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grubench.claims import CLAIMS
from grubench.errors import ConfigError

GROUPS = ("model", "dataset", "trainer", "optim")

# Settings that, where the config has them, hold a positive integer (or null where marked).
POSITIVE = ("model.hidden_size", "model.num_layers", "dataset.batch_size", "dataset.seq_len",
            "dataset.train_size", "dataset.test_size", "trainer.log_every_n_steps")
NON_NEGATIVE = ("dataset.val_size",)  # mnist1d: 0 trains on every training sequence, as the paper
POSITIVE_OR_NULL = ("threads", "early_stopping.patience", "dataset.limit", "dataset.max_pieces", "model.embed_dim")
ABSENT = object()
INT64 = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's seeds (Lightning seeds numpy, torch and random from one)
BATCH_LIMITS = ("trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches")


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def refuse(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={OmegaConf.to_container(value) if OmegaConf.is_config(value) else value!r}: "
                      f"must be {valid}")


def known_keys() -> DictConfig:
    """The top-level settings and their sections, as the packaged config.yaml declares them."""
    declared = OmegaConf.load(resources.files("grubench.conf") / "config.yaml")
    declared.pop("defaults", None)
    declared.pop("hydra", None)
    return declared


def check_unknown(cfg: DictConfig) -> None:
    """Keys added with `+key=value` that no part of grubench reads."""
    declared = known_keys()
    for key in cfg:
        if key in GROUPS:
            continue
        if key not in declared:
            names = ", ".join([*declared, *GROUPS])
            raise ConfigError(f"{key}: no such setting; the top-level settings are {names}")
        if OmegaConf.is_dict(declared[key]) and OmegaConf.is_dict(cfg[key]) and declared[key]:
            for inner in cfg[key]:
                if inner not in declared[key]:
                    raise ConfigError(f"{key}.{inner}: no such setting; {key} has {', '.join(declared[key])}")


def check_kinds(cfg: DictConfig) -> None:
    """What every setting of a kind must be, whatever its name: an integer within int64 (what
    torch and numpy hold), a finite number, a seed (`seed`, `*_seed`) within numpy's 0..2^32-1,
    `threads` no more than this machine's cores."""
    import os

    from grubench.config import flatten

    settings = flatten(OmegaConf.to_container(cfg, resolve=True), sep=".")
    for key in sorted(settings, key=lambda k: k.count(".")):  # `seed` before `dataset.seed: ${seed}`
        value = settings[key]
        if key.split(".")[0] == "hydra":
            continue
        if integer(value) and not -INT64 <= value <= INT64:
            refuse(key, value, "an integer torch can hold (at most 2^63 - 1)")
        if isinstance(value, float) and not math.isfinite(value):
            refuse(key, value, "a finite number")
        if (key == "seed" or key.endswith("_seed") or key.endswith(".seed")) and integer(value) \
                and not 0 <= value <= SEED_MAX:
            refuse(key, value, f"a seed numpy takes: an integer from 0 to {SEED_MAX}")
    threads, cores = cfg.get("threads"), os.cpu_count() or 1
    if integer(threads) and threads > cores:
        refuse("threads", threads, f"at most the {cores} cores of this machine, or null (torch's default)")


def check_values(cfg: DictConfig) -> None:
    """Every setting whose meaning can be judged from the config alone."""
    check_unknown(cfg)
    check_kinds(cfg)
    if not integer(cfg.seed):
        refuse("seed", cfg.seed, "an integer")
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is not ABSENT and not (integer(value) and value > 0):
            refuse(key, value, "a positive integer")
    for key in NON_NEGATIVE:
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is not ABSENT and not (integer(value) and value >= 0):
            refuse(key, value, "an integer >= 0")
    for key in POSITIVE_OR_NULL:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not (integer(value) and value > 0):
            refuse(key, value, "a positive integer, or null")
    threshold = OmegaConf.select(cfg, "early_stopping.stopping_threshold", default=None)
    if threshold is not None and not (number(threshold) and math.isfinite(threshold)):
        refuse("early_stopping.stopping_threshold", threshold, "a number (the validation metric to stop at), or null")
    steps = cfg.get("gradient_flow", [])
    if not (OmegaConf.is_list(steps) and all(integer(s) and s >= 0 for s in steps) and len(set(steps)) == len(steps)):
        refuse("gradient_flow", steps, "a list of distinct optimiser steps (integers >= 0; 0: at initialisation) "
               "to measure the gradient flow at, e.g. gradient_flow=[0,1000]; [] measures nothing")
    for key in ("tracking.log_checkpoint", "verbose"):
        value = OmegaConf.select(cfg, key, default=False)
        if not isinstance(value, bool):
            refuse(key, value, "true or false")
    if cfg.get("run_name") is not None and not isinstance(cfg.run_name, str):
        refuse("run_name", cfg.run_name, "a name, or null")
    experiment = cfg.tracking.get("experiment")
    if not isinstance(experiment, str) or not experiment.strip():
        refuse("tracking.experiment", experiment, "a non-empty name")
    claims = cfg.get("claims")
    if not OmegaConf.is_list(claims) or any(c not in CLAIMS for c in claims):
        refuse("claims", claims, f"a list of claim ids out of {', '.join(CLAIMS)}, e.g. claims=[C1,C5]")
    decides = cfg.get("decides")
    if not OmegaConf.is_dict(decides) or any(
            claim not in CLAIMS or not OmegaConf.is_list(named) or not all(isinstance(s, str) for s in named)
            for claim, named in decides.items()):
        refuse("decides", decides, "a mapping from claim ids to lists of settings, e.g. {C1: [adding T=100]}")
    for key in ("study_lr", "study_width"):
        table = cfg.get(key)
        if not OmegaConf.is_dict(table) or not all(number(v) and v > 0 for v in table.values()):
            refuse(key, table, "a mapping from model names to positive numbers, e.g. {gru: 0.01, lstm: 0.003}")
    if cfg.get("arm") is not None and not (isinstance(cfg.arm, str) and cfg.arm.strip()):
        refuse("arm", cfg.arm, "a name, or null")
    check_trainer(cfg.trainer)
    check_optim(cfg.optim)


def check_trainer(trainer: DictConfig) -> None:
    max_steps = trainer.get("max_steps", -1)
    if not integer(max_steps) or (max_steps <= 0 and max_steps != -1):
        refuse("trainer.max_steps", max_steps, "a positive integer, or -1 (no limit)")
    max_epochs = trainer.get("max_epochs")
    if not (integer(max_epochs) and max_epochs > 0):
        if max_steps > 0 and (max_epochs is None or max_epochs == -1):
            pass  # trained for trainer.max_steps steps
        else:
            refuse("trainer.max_epochs", max_epochs, "a positive integer (or -1 with trainer.max_steps set)")
    for key in BATCH_LIMITS:
        value = trainer.get(key.split(".")[1])
        if value is None:
            continue
        if not number(value) or value <= 0 or (not integer(value) and value > 1):
            refuse(key, value, "a number of batches (>= 1), a fraction of the epoch in (0, 1], or null")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (not number(clip) or clip < 0):
        refuse("trainer.gradient_clip_val", clip, "a non-negative number, or null (no clipping)")
    devices = trainer.get("devices")
    if devices is not None and not (devices == "auto" or (integer(devices) and devices > 0) or devices == -1
                                    or OmegaConf.is_list(devices)):
        refuse("trainer.devices", devices, "a positive number of devices, auto, -1 (all) or a list of indices")


def check_optim(optim: DictConfig) -> None:
    lr = optim.get("lr")
    if not number(lr) or lr <= 0:
        refuse("optim.lr", lr, "a positive number (a zero rate never changes the model)")
    decay = optim.get("weight_decay", 0.0)
    if not number(decay) or decay < 0:
        refuse("optim.weight_decay", decay, "a non-negative number")


def check_accelerator(trainer: DictConfig) -> None:
    """A GPU asked for on a machine without one (imports torch: called when building the run)."""
    import torch

    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        refuse("trainer.accelerator", accelerator, "cpu or auto on this machine: torch sees no CUDA GPU "
               "(use trainer=default or trainer=cpu)")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        refuse("trainer.accelerator", accelerator, "cpu or auto on this machine: torch sees no Apple GPU")
