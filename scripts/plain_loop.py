"""The default run, `python -m grubench +model=gru`, as a plain PyTorch loop: the same data,
model, initial weights, batches, epochs, validation each epoch and a test pass at the end, with
no Lightning, MLflow or Hydra app around it. The baseline for the harness's whole-process cost:

    /usr/bin/time -f "%e s %U user %S sys %M KiB" python -m grubench +model=gru
    /usr/bin/time -f "%e s %U user %S sys %M KiB" python scripts/plain_loop.py

Extra arguments are config overrides, as the main command takes them.
"""

from __future__ import annotations

import sys
import time

import torch

from grubench.bench.compose import run_config
from grubench.bench.overhead import plain_trial
from grubench.task import loss_and_metric_inputs


def main(overrides: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = run_config(["+model=gru", *overrides])
    began = time.perf_counter()
    trained = plain_trial(cfg)
    model, data = trained["model"].eval(), trained["datamodule"]
    with torch.no_grad():
        losses = [loss_and_metric_inputs(model, data.spec, batch)[0] for batch in data.test_dataloader()]
    print(f"plain loop: {trained['steps']} steps, test loss {float(torch.stack(losses).mean()):.4f}, "
          f"{time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
