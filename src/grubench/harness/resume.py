"""`resume=RUN_ID` or `resume=PATH.ckpt`: continue a crashed or killed run, in the same MLflow run.

    python -m grubench resume=3f2a...            # the run's last checkpoint (tag checkpoint_dir)
    python -m grubench resume=outputs/.../checkpoints/last.ckpt

A resumed run
  1. finds the run (by id, or by the id its checkpoint holds) and its checkpoint;
  2. takes the config the run recorded (its config.yaml artifact): overrides given beside
     `resume` must agree with it, `tracking.uri` aside (the store is where the command says);
  3. reopens the run: RUNNING again, owned by this host and process, `resumed` counted;
  4. trains on from the checkpoint. The epochs after the checkpoint run again from their first
     batch; metric entries the dead process had already written for them are not written twice.

A run still alive, or one that finished, is not resumed. A run killed before its first
checkpoint starts over, in the same run.
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from grubench.config import flatten
from grubench.errors import ConfigError
from grubench.harness import checkpointing
from grubench.harness.provenance import owner_alive
from grubench.harness.store import Run, Store

# Overrides that may differ from the recorded config: resume itself, and where the store is.
FREE_KEYS = ("resume", "tracking.uri")


@dataclass
class Resumed:
    run_id: str
    checkpoint: Path | None      # None: no checkpoint yet, the run starts over
    checkpoint_dir: Path | None
    config: DictConfig           # the recorded config, `resume` set to the checkpoint path
    logged: set[tuple[str, int]]  # (metric, step) pairs the store already holds


def find(cfg: DictConfig, store: Store, overrides: list[str]) -> Resumed:
    target = str(cfg.resume)
    checkpoint: Path | None = None
    if target.endswith(".ckpt") or Path(target).is_file():
        checkpoint = Path(target).expanduser().resolve()
        if not checkpoint.is_file():
            raise ConfigError(f"resume: no checkpoint at {checkpoint}")
        run_id = checkpointing.run_id_of(checkpoint)
        if not run_id:
            raise ConfigError(f"resume: {checkpoint} holds no grubench run id; resume from a checkpoint grubench wrote")
    else:
        run_id = target
    uri, client = store.uri, store.client
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        raise ConfigError(f"resume: no run {run_id} in {uri}; give tracking.uri= the store the run is in") from error
    check_resumable(run)
    tags = run.data.tags
    checkpoint_dir = checkpoint.parent if checkpoint else Path(tags["checkpoint_dir"]) if tags.get("checkpoint_dir") else None
    if checkpoint is None and checkpoint_dir is not None and (checkpoint_dir / checkpointing.LAST).is_file():
        checkpoint = checkpoint_dir / checkpointing.LAST
    config = recorded_config(cfg, run_id, uri, overrides)
    config.resume = str(checkpoint) if checkpoint else None
    return Resumed(run_id, checkpoint, checkpoint_dir, config, logged_pairs(client, run))


def check_resumable(run) -> None:
    info, tags = run.info, run.data.tags
    if info.status == "FINISHED":
        raise ConfigError(f"resume: run {info.run_id} finished; there is nothing to resume")
    if info.status == "RUNNING" and tags.get("host") == socket.gethostname() and tags.get("pid", "").isdigit() \
            and owner_alive(tags):
        raise ConfigError(f"resume: run {info.run_id} is still running (pid {tags['pid']}); stop it first")


def recorded_config(cfg: DictConfig, run_id: str, uri: str, overrides: list[str]) -> DictConfig:
    """The run's config.yaml artifact, checked against the overrides given now.

    Keys the config gained since the run was recorded take the values composed now."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                       tracking_uri=uri, dst_path=folder)
        except Exception as error:  # noqa: BLE001 - any failure: the run cannot be resumed
            raise ConfigError(f"resume: run {run_id} has no readable config.yaml artifact") from error
        recorded = OmegaConf.load(path)
    # The most specific override first: `model.hidden_size=64` is the one to name, not `+model=gru`.
    for override in sorted(overrides, key=lambda o: -o.split('=', 1)[0].count('.')):
        key = override.split("=", 1)[0].lstrip("+~")
        if key in FREE_KEYS or key.startswith("hydra"):
            continue
        now, before = leaves(OmegaConf.select(cfg, key), key), leaves(OmegaConf.select(recorded, key), key)
        for leaf in sorted(set(now) | set(before)):
            if now.get(leaf) != before.get(leaf):
                raise ConfigError(f"resume: the command line sets {leaf}={now.get(leaf)}, run {run_id} has "
                                  f"{leaf}={before.get(leaf)}; a resumed run keeps its config (drop {override})")
    for key in cfg:
        if key not in recorded:
            recorded[key] = cfg[key]
    recorded.tracking.uri = cfg.tracking.uri
    return recorded


def leaves(value, key: str) -> dict:
    """{"model.hidden_size": 8, ...} for a config node at `key`, {key: value} for a plain value."""
    if OmegaConf.is_list(value):
        return {key: OmegaConf.to_container(value, resolve=True)}
    if not OmegaConf.is_dict(value):
        return {key: value}
    flat = flatten(OmegaConf.to_container(value, resolve=True))
    return {f"{key}.{name.replace('/', '.')}": leaf for name, leaf in flat.items()}


def logged_pairs(client, run) -> set[tuple[str, int]]:
    pairs = set()
    for key in run.data.metrics:
        pairs.update((key, m.step) for m in client.get_metric_history(run.info.run_id, key))
    return pairs


def reopen(run: Run, resumed: Resumed) -> None:
    """Count the resumption on the run and clear the error of its last attempt (`tracked_run`
    has made it RUNNING again, owned by this process)."""
    tags = run.info().data.tags
    if "error" in tags:
        run.delete_tag("error")
    count = int(tags.get("resumed", "0")) + 1
    epoch = None
    if resumed.checkpoint is not None:
        epoch = checkpointing.read(resumed.checkpoint).get("epoch")
    run.set_tags({"resumed": count,
                  f"resumed/{count}": f"from {resumed.checkpoint} (epoch {epoch})" if resumed.checkpoint else "from the start"})
