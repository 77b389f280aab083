"""`python -m MODULE ARGS` in this process: the real entry point, without a new interpreter.

A new process pays 5-8 s to import torch, Lightning and MLflow; here they are imported once per
test worker. `command()` runs the module as `python -m` does (runpy, as `__main__`, with argv,
working directory and environment set), captures what it prints, and puts back everything a
command changes in the process: argv, working directory, environment, signal handlers, logging,
warnings, Hydra's global state and MLflow's tracking URI. What a command's own child processes
print (parallel launchers' workers) is not captured: start a real process for that
(`subprocess_command`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def command(module: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run `python -m module *args` in `cwd` in this process; MLFLOW_TRACKING_URI is unset unless
    `env` sets it."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved = _Saved()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.argv = [module, *args]
        GlobalHydra.instance().clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            as_a_new_process()
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        saved.restore()
    return Result(code, out.getvalue(), err.getvalue())


def main_command(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    """`python -m grubench ARGS` in this process."""
    return command("grubench", args, cwd, env)


def subprocess_command(args: list[str], cwd: Path, timeout: float = 300, module: str = "grubench",
                       **popen) -> subprocess.CompletedProcess:
    """`python -m grubench ARGS` as a new process (signals, kill -9, several processes, what
    child processes print), its own MLflow store in `cwd` unless ARGS name one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


def as_a_new_process() -> None:
    """Warnings shown on stderr under Python's own default filters, as in a new process (pytest
    records them and shows every DeprecationWarning)."""
    warnings.resetwarnings()
    for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                             ("ignore", ImportWarning), ("ignore", ResourceWarning)):
        warnings.simplefilter(action, category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.filterwarnings("ignore", message=".*found in sys.modules after import of package", category=RuntimeWarning)
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))


class _Saved:
    """What a command may change in this process, put back by `restore`."""

    def __init__(self):
        self.argv, self.cwd, self.environ = sys.argv[:], os.getcwd(), dict(os.environ)
        self.signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        self.formatwarning = warnings.formatwarning
        root = logging.getLogger()
        self.root = (root.level, root.handlers[:])
        self.loggers = {name: (logger.level, logger.handlers[:], logger.propagate, logger.disabled)
                        for name, logger in logging.Logger.manager.loggerDict.items()
                        if isinstance(logger, logging.Logger)}
        # MLflow's global tracking URI, which MLflow mirrors in MLFLOW_TRACKING_URI (None: unset;
        # not mlflow.get_tracking_uri(), which would give the default for this folder, and setting
        # that back would export it to every process a later test starts)
        self.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")

    def restore(self) -> None:
        sys.argv = self.argv
        os.chdir(self.cwd)
        if "mlflow" in sys.modules:  # before the environment, which it writes
            import mlflow

            mlflow.set_tracking_uri(self.tracking_uri)
        os.environ.clear()
        os.environ.update(self.environ)
        for number, handler in self.signals.items():
            signal.signal(number, handler)
        warnings.formatwarning = self.formatwarning
        root = logging.getLogger()
        for handler in root.handlers[:]:
            if handler not in self.root[1]:
                handler.close()
        root.setLevel(self.root[0])
        root.handlers[:] = self.root[1]
        for name, logger in logging.Logger.manager.loggerDict.items():
            if not isinstance(logger, logging.Logger):
                continue
            level, handlers, propagate, disabled = self.loggers.get(name, (logging.NOTSET, [], True, False))
            for handler in logger.handlers[:]:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled
