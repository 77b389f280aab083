"""`python -m grubench +model=NAME [overrides]`: train one model, tracked in MLflow.

`-m` runs a sweep (Hydra multirun), one MLflow child run per job under a parent run. Only Hydra
is imported up front: `--help` and refused configs answer before torch, Lightning and MLflow load.

A refused command prints one line, `grubench: error: <setting>=<value>: <what is valid>`, exits
1 and leaves nothing behind (the wrapper every command runs in: `harness.command`); the job folder
Hydra made for a refused run is removed.
"""

import logging
import shutil
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from grubench.errors import GrubenchError, Interrupted, SweepFailed, first_line
from grubench.harness.command import error_line, hydra_task, run_command, say


@hydra.main(version_base="1.3", config_path="pkg://grubench.conf", config_name="config")
@hydra_task
def main(cfg: DictConfig) -> float | None:
    from grubench.config import check
    from grubench.harness.budget import left_out_by_budget
    from grubench.harness.quiet import quiet
    from grubench.harness.sweep import mark_job_failed, multirun

    in_sweep = multirun()
    quiet(bool(cfg.get("verbose", False)))
    if in_sweep and left_out_by_budget():  # a study past its time budget: train nothing
        return None
    try:
        check(cfg)
        from grubench.harness.allocator import collector_off_while_importing

        with collector_off_while_importing():
            from grubench.train import train

        return train(cfg)
    except GrubenchError as error:
        if not in_sweep:
            remove_job_folder()
            raise
        say(error_line("grubench", error))  # the job failed; the sweep goes on and counts it
        mark_job_failed(str(error))
        return None
    except KeyboardInterrupt as interrupt:
        if not in_sweep and not (isinstance(interrupt, Interrupted) and interrupt.run_id):
            remove_job_folder()
        raise


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


def main_closing_the_sweep() -> None:
    """`main`; whatever ends it closes a sweep's parent run that is still open (Hydra calls no
    callback when a launcher or sweeper raises, or on Ctrl-C). A launcher that fails (a bad
    launcher setting, say) is said in one line naming the parent, which holds the traceback."""
    import sys

    try:
        main()
    except BaseException as failure:
        sweep = sys.modules.get("grubench.harness.sweep")  # not loaded: no sweep ran, no parent is open
        parent = sweep.close_parent(failure) if sweep is not None else None
        if parent and isinstance(failure, Exception) and not isinstance(failure, GrubenchError):
            raise SweepFailed(f"the sweep stopped: {first_line(failure)}; its parent run {parent} is recorded "
                              "FAILED (traceback in its error.txt)") from failure
        raise


def entry() -> None:
    run_command("grubench", main_closing_the_sweep, hydra_app=True)


if __name__ == "__main__":
    entry()
