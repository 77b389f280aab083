"""Checks on the composed config, and the objects built from it, before any run opens.

A bad value stops the command with one line that names the setting (`ConfigError`); the
constructors of data sets and models check their own arguments, and `build` turns what they
raise into that line.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from grubench.errors import ConfigError


def choices(group: str) -> list[str]:
    """The configs of `group` (not the shared bases, `_name.yaml`): in a running Hydra, every
    folder of its search path (a user's --config-dir too); elsewhere the packaged conf/<group>/."""
    hydra = GlobalHydra.instance()
    if hydra.is_initialized():
        names = hydra.config_loader().get_group_options(group)
    else:
        folder = resources.files("grubench.conf") / group
        names = [p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")]
    return sorted(name for name in names if not name.startswith("_"))


def check(cfg: DictConfig) -> None:
    """Checks that need no object built: a model is chosen, top-level values have their types."""
    if cfg.get("resume"):
        return  # the run's recorded config is checked when it is rebuilt
    if cfg.get("model") is None or "_target_" not in cfg.model:
        raise ConfigError(f"no model chosen: add +model=NAME, one of: {', '.join(choices('model'))}")
    for group in ("dataset", "trainer", "optim"):
        if cfg.get(group) is None:
            raise ConfigError(f"no {group} config: choose one with {group}=NAME, one of: {', '.join(choices(group))}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise ConfigError(f"threads must be a positive integer or null, got {threads!r}")


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)`, reporting a bad argument as one ConfigError line.

    The keyword arguments are passed to the built factory, not merged into the config, so that
    objects (a TaskSpec, callbacks) reach the constructor as they are.
    """
    try:
        return instantiate(node, _partial_=True)(**kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"bad {group} config: {cause}") from error
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad {group} config: {error}") from error
