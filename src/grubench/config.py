"""The composed config: composing it from any program, checking it, building objects from it.

    run_config(overrides)        the training config (conf/config.yaml) composed with overrides
    check(cfg)                   every value means something (checks.py), before anything is built
    build(node, group, **kw)     instantiate a config node; a bad argument is one ConfigError line
    flatten(cfg)                 {"a": {"b": 1}} -> {"a/b": 1}, as runs record their params

A bad value stops the command with one line that names the setting (`ConfigError`); the
constructors of data sets and models check their own arguments, and `build` turns what they
raise into that line.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Mapping

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException, OverrideParseException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grubench.checks import check_values
from grubench.errors import ConfigError
from grubench.internals import is_lightning_misconfiguration


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


def run_config(overrides: list[str]) -> DictConfig:
    """The training config composed with `overrides`, e.g. ["+model=gru", "model.hidden_size=64"].

    Inside a Hydra app of grubench's config root (the main command, the bench: `bench.yaml` is a
    second primary config of the same root) the running Hydra composes it, search path and all
    (a user's --config-dir included); elsewhere (tests, scripts) a Hydra is made for the call."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def model_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """The training config with `+model=name`; ConfigError naming the choices if there is no such model."""
    if name not in choices("model"):
        raise ConfigError(f"no model config {name!r}; one of: {', '.join(choices('model'))}")
    return run_config([f"+model={name}", *overrides])


def flatten(config: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1} (with `sep`); lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + sep, sep))
        else:
            flat[name] = value
    return flat


def check(cfg: DictConfig) -> None:
    """Checks that need no object built: a model is chosen, every value means something (checks.py)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:  # `seed=${oops}`: an interpolation that points nowhere
        raise ConfigError(f"{error.full_key}: {str(error).strip().splitlines()[0]}") from error
    if cfg.get("resume"):
        return  # the run's recorded config is checked when it is rebuilt
    if cfg.get("model") is None or "_target_" not in cfg.model:
        raise ConfigError(f"no model chosen: add +model=NAME, one of: {', '.join(choices('model'))}")
    for group in ("dataset", "trainer", "optim"):
        if cfg.get(group) is None:
            raise ConfigError(f"no {group} config: choose one with {group}=NAME, one of: {', '.join(choices(group))}")
    check_values(cfg)
    if cfg.get("test_weights", "best") not in ("best", "last"):
        raise ConfigError(f"test_weights={cfg.test_weights}: must be best or last")


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
    except Exception as error:
        if not is_lightning_misconfiguration(error):
            raise
        raise ConfigError(f"bad {group} config: {error}") from error


def hydra_error_line(error: Exception, sweep: bool = False) -> str:
    """One line for an error Hydra raises while reading the command line or composing the config
    (of a `sweep`'s job: `-m`)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing:
        group, name = missing.groups()
        return f"{group}={name}: no such {group} config; one of: {', '.join(choices(group))}"
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        hint = "python -m grubench --help lists the settings; README: Configuration reference"
        if sweep and key.startswith("model."):
            hint = f"a model option; with +model swept (-m) write ++{key}=..."
        return f"{key}: no such setting ({hint})"
    if isinstance(error, OverrideParseException):
        hint = """ (quote items that hold '=': 'key=["a=1"]')""" if "=" in error.override.split("=", 1)[-1] else ""
        return f"cannot read the override {error.override}: {first}{hint}"
    key = getattr(error, "full_key", None)
    return f"{key}: {first}" if key else first
