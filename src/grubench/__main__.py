"""`python -m grubench +model=NAME [overrides]`: train one model, tracked in MLflow.

`-m` runs a sweep (Hydra multirun), one MLflow child run per job under a parent run.
"""

import sys

import hydra
from omegaconf import DictConfig

from grubench.config import GrubenchError
from grubench.sweep import mark_job_failed, mark_parent_killed
from grubench.train import multirun, sigterm_as_interrupt, train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    in_sweep = multirun()
    try:
        with sigterm_as_interrupt():
            return train(cfg)
    except GrubenchError as error:
        print(f"grubench: error: {error}", file=sys.stderr, flush=True)
        if in_sweep:
            mark_job_failed(str(error))
            return None
        sys.exit(1)
    except KeyboardInterrupt:
        if in_sweep:
            mark_parent_killed(cfg)
        print("grubench: interrupted; the run is recorded KILLED", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
