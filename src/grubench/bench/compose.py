"""Compose the packaged run configs (conf/config.yaml + a model) from inside any program.

The bench is its own Hydra app with its own config folder, so the training configs cannot be
reached through the app's search path. `run_config` composes them in a Hydra of its own and puts
back whatever Hydra was running, so it works from the bench, from a training run and from tests.
"""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from grubench.config import ConfigError, choices


def run_config(overrides: list[str]) -> DictConfig:
    """The training config composed with `overrides`, e.g. ["+model=gru", "model.hidden_size=64"]."""
    global_hydra = GlobalHydra.instance()
    running = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    finally:
        if running is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(running)


def model_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """The training config with `+model=name`; ConfigError naming the choices if there is no such model."""
    if name not in choices("model"):
        raise ConfigError(f"no model config {name!r}; one of: {', '.join(choices('model'))}")
    return run_config([f"+model={name}", *overrides])
