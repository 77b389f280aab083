"""Where a number came from: versions, commit, device, host and the process that owns a run.

Every run is tagged with `environment_tags()`. The tags `host`, `pid` and `pid_start` say which
process owns a RUNNING run, so that `owner_alive` can tell a run whose process died (reap,
resume) from one still training.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path


def git_commit() -> str:
    """The commit of the grubench source tree, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def environment_tags() -> dict[str, str]:
    """Versions, host and process: what a reader needs to know where a number came from."""
    import mlflow
    import pytorch_lightning
    import torch

    cuda = torch.version.cuda or "none"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    commit = git_commit()
    return {
        "mlflow.source.name": "python -m grubench",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "version/torch": torch.__version__,
        "version/lightning": pytorch_lightning.__version__,
        "version/cuda": cuda,
        "version/cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "none",
        "version/mlflow": mlflow.__version__,
        "device": device,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "pid_start": str(process_start(os.getpid())),
    }


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux), so that a pid reused by a
    later process is not taken for the run's; None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name


def process_alive(pid: int, started: int | None) -> bool:
    """Whether process `pid` exists and is the one that started at `started` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return started is None or process_start(pid) in (None, started)


def owner_alive(tags: dict) -> bool:
    """Whether the process that owns a run (its tags host, pid, pid_start) may still run: True
    for another host's run or one without a pid, which this host cannot judge."""
    if tags.get("host") != socket.gethostname() or not tags.get("pid", "").isdigit():
        return True
    started = int(tags["pid_start"]) if tags.get("pid_start", "").isdigit() else None
    return process_alive(int(tags["pid"]), started)
