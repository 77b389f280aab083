"""`python -m grubench +model=NAME [overrides]`: train one model, tracked in MLflow.

`-m` runs a sweep (Hydra multirun), one MLflow child run per job under a parent run. Only Hydra
is imported up front: `--help` and refused configs answer before torch, Lightning and MLflow load.

A refused command prints one line, `grubench: error: <setting>=<value>: <what is valid>`, exits
1 and leaves nothing behind: Hydra's own errors (an unknown config, an unreadable override) are
caught here and said in one line too, and the job folder Hydra made for a refused run is removed.
"""

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from grubench.errors import GrubenchError

# Whether the task function began: Hydra errors before it are the user's input, said in one line.
_started = False


@hydra.main(version_base="1.3", config_path="pkg://grubench.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    global _started
    _started = True
    from grubench.config import check
    from grubench.harness.sweep import mark_job_failed, multirun
    from grubench.quiet import quiet

    in_sweep = multirun()
    quiet(bool(cfg.get("verbose", False)))
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
        remove_job_folder()
        sys.exit(1)
    except KeyboardInterrupt as interrupt:
        run_id = getattr(interrupt, "run_id", None)
        said = f"run {run_id} is recorded KILLED" if run_id else "no run was opened"
        print(f"grubench: interrupted; {said}", file=sys.stderr, flush=True)
        if not run_id and not in_sweep:
            remove_job_folder()
        sys.exit(130)


def remove_job_folder() -> None:
    """Remove the folder Hydra made for this job when it holds nothing but Hydra's own files
    (`.hydra/`, the job log), and the dated folders above it that are left empty, up to the
    directory the command started in."""
    folder = Path(HydraConfig.get().runtime.output_dir).resolve()
    own = {".hydra", f"{HydraConfig.get().job.name}.log"}
    if not folder.is_dir() or any(entry.name not in own for entry in folder.iterdir()):
        return
    for handler in logging.getLogger().handlers[:]:  # the job log's file handler writes into the folder
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(folder, ignore_errors=True)
    start = Path.cwd().resolve()
    for parent in folder.parents:
        if parent == start or start not in parent.parents:
            break
        try:
            parent.rmdir()  # only an empty one
        except OSError:
            break


def entry() -> None:
    """`main`, with Hydra's errors in one line, and whatever ends it closes a sweep's parent run
    that is still open."""
    full_errors = "HYDRA_FULL_ERROR" in os.environ  # the user asked for Hydra's tracebacks
    os.environ["HYDRA_FULL_ERROR"] = "1"  # so that Hydra raises its errors here instead of printing them
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        close_sweep_parent(error)
        if full_errors or _started:
            raise
        from grubench.config import hydra_error_line

        sweep = "-m" in sys.argv or "--multirun" in sys.argv
        print(f"grubench: error: {hydra_error_line(error, sweep)}", file=sys.stderr, flush=True)
        sys.exit(1)
    except BaseException as failure:
        close_sweep_parent(failure)
        raise


def close_sweep_parent(failure: BaseException) -> None:
    sweep = sys.modules.get("grubench.harness.sweep")  # not loaded: no sweep ran, no parent is open
    if sweep is not None:
        sweep.close_parent(failure)


if __name__ == "__main__":
    entry()
