"""How many devices a run uses, which process of a multi-device run this is, and what a sweep allows.

`trainer=ddp` trains on several devices with one process each (Lightning DDP). Lightning starts
the other processes by running the same command again; they find their rank in the environment
(LOCAL_RANK, RANK or SLURM_PROCID), train alongside rank 0, and never talk to MLflow: rank 0
owns the run. A sweep cannot share its command that way, so a multirun job gets one device.
"""

from __future__ import annotations

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from grubench.errors import ConfigError


def rank_zero() -> bool:
    """Whether this process is rank 0 (the only one, outside multi-device runs)."""
    return rank_zero_only.rank == 0


def devices_per_job(trainer: DictConfig) -> int:
    """The number of devices the trainer config asks for: per node, times the nodes. `auto` and
    -1 count the GPUs here (one process on the CPU)."""
    devices = trainer.get("devices", 1)
    nodes = trainer.get("num_nodes", 1) or 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if not isinstance(devices, (int, str)):  # a list of device indices
        return len(devices) * nodes
    if trainer.get("accelerator") == "cpu":
        return nodes
    import torch

    return max(torch.cuda.device_count(), 1) * nodes


def check_sweep_devices(cfg: DictConfig) -> None:
    """A multirun job may use one device: refuse more, naming the setting that asks for it."""
    count = devices_per_job(cfg.trainer)
    if count > 1:
        nodes = cfg.trainer.get("num_nodes") or 1
        asked = f"trainer.devices={cfg.trainer.get('devices')}" + (f" trainer.num_nodes={nodes}" if nodes > 1 else "")
        raise ConfigError(
            f"a sweep (-m) runs each job on one device, but {asked} asks for {count}: Lightning starts a "
            "multi-device run by running its command again, which a sweep cannot share. "
            "Set trainer.devices=1, or run trainer=ddp without -m")
