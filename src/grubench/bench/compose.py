"""Compose the training config (conf/config.yaml + a model) from inside any program.

Inside a Hydra app of grubench's config root (the main command, the bench: `bench.yaml` is a
second primary config of the same root) the running Hydra composes it, search path and all
(a user's --config-dir included); elsewhere (tests, scripts) a Hydra is made for the call.
"""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from grubench.config import choices
from grubench.errors import ConfigError


def run_config(overrides: list[str]) -> DictConfig:
    """The training config composed with `overrides`, e.g. ["+model=gru", "model.hidden_size=64"]."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def model_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """The training config with `+model=name`; ConfigError naming the choices if there is no such model."""
    if name not in choices("model"):
        raise ConfigError(f"no model config {name!r}; one of: {', '.join(choices('model'))}")
    return run_config([f"+model={name}", *overrides])
