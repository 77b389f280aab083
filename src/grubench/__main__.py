"""`python -m grubench +model=NAME [overrides]`: train one model, tracked in MLflow.

`-m` runs a sweep (Hydra multirun), one MLflow child run per job under a parent run. Only Hydra
is imported up front: `--help` and refused configs answer before torch, Lightning and MLflow load.
"""

import sys

import hydra
from omegaconf import DictConfig

from grubench.errors import GrubenchError


@hydra.main(version_base="1.3", config_path="pkg://grubench.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from grubench.config import check
    from grubench.harness.sweep import mark_job_failed, multirun

    in_sweep = multirun()
    from grubench.harness.budget import left_out_by_budget

    if in_sweep and left_out_by_budget():  # a study past its time budget: train nothing
        return None
    try:
        check(cfg)
        from grubench.train import sigterm_as_interrupt, train

        with sigterm_as_interrupt():
            return train(cfg)
    except GrubenchError as error:
        print(f"grubench: error: {error}", file=sys.stderr, flush=True)
        if in_sweep:
            mark_job_failed(str(error))
            return None
        sys.exit(1)
    except KeyboardInterrupt:
        print("grubench: interrupted; the run is recorded KILLED", file=sys.stderr, flush=True)
        sys.exit(130)


def entry() -> None:
    """`main`, and whatever ends it closes a sweep's parent run that is still open."""
    try:
        main()
    except BaseException as failure:
        sweep = sys.modules.get("grubench.harness.sweep")  # not loaded: no sweep ran, no parent is open
        if sweep is not None:
            sweep.close_parent(failure)
        raise


if __name__ == "__main__":
    entry()
