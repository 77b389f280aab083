"""Checks on the composed config, and the objects built from it, before any run opens.

A bad value stops the command with one line that names the setting (`ConfigError`); the
constructors of data sets and models check their own arguments, and `build` turns what they
raise into that line.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig


class GrubenchError(Exception):
    """An error reported to the user as one line, without a traceback."""


class ConfigError(GrubenchError):
    """The configuration asks for something impossible."""


def choices(group: str) -> list[str]:
    """The names of the packaged configs in `conf/<group>/`."""
    folder = resources.files("grubench") / "conf" / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def check(cfg: DictConfig) -> None:
    """Checks that need no object built: a model is chosen, top-level values have their types."""
    if cfg.get("model") is None or "_target_" not in cfg.model:
        raise ConfigError(f"no model chosen: add +model=NAME, one of: {', '.join(choices('model'))}")
    for group in ("dataset", "trainer", "optim"):
        if cfg.get(group) is None:
            raise ConfigError(f"no {group} config: choose one with {group}=NAME, one of: {', '.join(choices(group))}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.get("test_weights", "best") not in ("best", "last"):
        raise ConfigError(f"test_weights must be best or last, got {cfg.test_weights!r}")
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
