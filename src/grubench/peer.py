"""`python -m grubench.peer [--pairs 3] [--init torch|keras] [--threads 1] [overrides]`: the main
command's work done by grubench and by Keras 3 on JAX (the document's own framework), side by
side, whole processes taking turns.

The work is the one `python -m grubench +model=gru [overrides]` does, read from its composed
config so that both sides take the same numbers: the data set drawn for the seed (written once to
data.npz: the very sequences grubench trains on), the recurrent layer of H units and a linear head
on its last state, Adam at optim.lr with the gradient's global norm clipped to
trainer.gradient_clip_val, batches of dataset.batch_size shuffled each epoch, trainer.max_epochs
epochs with a validation pass after each, and the test on the weights of the best validation loss.
Keras builds layers.GRU / LSTM / SimpleRNN(H) and Dense(1) with its own defaults (its
initialisation, Adam's epsilon 1e-7 against torch's 1e-8, GRU reset_after=True as torch's GRU).

Each pair runs both processes, in turns (grubench first in odd pairs, Keras first in even ones),
and measures each whole process: CPU seconds (user + system, from the operating system's account
of the finished child) and wall seconds. With --threads 1 Keras's XLA runs one thread on one core
(as grubench's `threads=1`, its default). It prints per pair both times and both test MSEs, and
the medians over pairs of the ratios grubench / Keras.

Regression tasks only (adding; the test MSE is the score both report). Needs the extra:
pip install 'grubench[peer]' (keras, jax).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig

from grubench.errors import ConfigError, GrubenchError, first_line
from grubench.harness.command import run_command

KERAS_LAYERS = {"gru": "GRU", "lstm": "LSTM", "rnn": "SimpleRNN"}
SCORE = re.compile(r" test/mse = ([0-9.eE+-]+|nan)")


def work(model: str, overrides: list[str]) -> tuple[dict, DictConfig]:
    """The main command's settings for `+model=model` and `overrides`, as the Keras side needs
    them, and the composed config."""
    from grubench.config import run_config

    if model not in KERAS_LAYERS:
        raise ConfigError(f"--model {model!r}: the peer benchmark runs {', '.join(KERAS_LAYERS)} "
                          "(Keras has those layers)")
    cfg = run_config([f"+model={model}", *overrides])
    if cfg.model.num_layers != 1 or cfg.model.bidirectional or cfg.model.embed_dim is not None:
        raise ConfigError("the peer benchmark runs one unidirectional layer on the raw inputs "
                          "(model.num_layers=1, bidirectional=false, embed_dim=null)")
    return {"model": model, "layer": KERAS_LAYERS[model], "hidden": int(cfg.model.hidden_size),
            "lr": float(cfg.optim.lr), "clip": cfg.trainer.gradient_clip_val, "batch": int(cfg.dataset.batch_size),
            "epochs": int(cfg.trainer.max_epochs), "seed": int(cfg.seed)}, cfg


def write_data(cfg: DictConfig, path: Path) -> None:
    """The data set's splits as grubench draws them, to an .npz of x_/y_train, val, test."""
    import numpy as np

    from grubench.config import build

    data = build(cfg.dataset, "dataset")
    if data.spec.output != "regression" or data.spec.per_step:
        raise ConfigError(f"dataset {data.spec.name}: the peer benchmark compares test MSE, on regression tasks "
                          "(dataset=adding)")
    data.setup()
    arrays = {}
    for split, (x, y, *_) in data.splits.items():
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.cpu().numpy(), y.cpu().numpy()
    np.savez(path, **arrays)


def keras_child(folder: Path, one_core: bool) -> None:
    """Train and test in Keras (run in its own process: `--keras-child FOLDER`); writes keras.json.
    `one_core`: pin the process to one core first, before numpy or XLA start any thread (every
    thread started later inherits the affinity)."""
    if one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np

    import keras

    settings = json.loads((folder / "work.json").read_text())
    data = np.load(folder / "data.npz")
    keras.utils.set_random_seed(settings["seed"])
    x = data["x_train"]
    model = keras.Sequential([keras.Input(x.shape[1:]), getattr(keras.layers, settings["layer"])(settings["hidden"]),
                              keras.layers.Dense(1)])
    clip = {"global_clipnorm": settings["clip"]} if settings["clip"] else {}
    model.compile(optimizer=keras.optimizers.Adam(settings["lr"], **clip), loss="mse")

    class BestWeights(keras.callbacks.Callback):
        best, weights = float("inf"), None

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < self.best:
                self.best, self.weights = logs["val_loss"], self.model.get_weights()

    best = BestWeights()
    model.fit(x, data["y_train"], batch_size=settings["batch"], epochs=settings["epochs"], shuffle=True,
              validation_data=(data["x_val"], data["y_val"]), callbacks=[best], verbose=0)
    if best.weights is not None:
        model.set_weights(best.weights)
    test = model.evaluate(data["x_test"], data["y_test"], batch_size=settings["batch"], verbose=0)
    (folder / "keras.json").write_text(json.dumps({"test_mse": float(test), "keras": keras.__version__}))


def timed(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a whole process; (its result, CPU seconds of it and its children, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, cpu, wall


def keras_env(threads: int | None) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    return env


def run_grubench(model: str, init: str, threads: int | None, overrides: list[str], folder: Path, pair: int):
    command = [sys.executable, "-m", "grubench", f"+model={model}", f"model.init={init}",
               f"threads={'null' if threads is None else threads}", "trainer.enable_progress_bar=false",
               f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", f"hydra.run.dir={folder / f'grubench-{pair}'}",
               *overrides]
    done, cpu, wall = timed(command, dict(os.environ))
    found = SCORE.search(done.stdout)
    if done.returncode != 0 or not found:
        raise GrubenchError(f"the grubench run of pair {pair} failed: {first_line(done.stderr or done.stdout)}")
    return cpu, wall, float(found.group(1))


def run_keras(threads: int | None, folder: Path, pair: int):
    command = [sys.executable, "-m", "grubench.peer", "--keras-child", str(folder),
               "--threads", "null" if threads is None else str(threads)]
    done, cpu, wall = timed(command, keras_env(threads))
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise GrubenchError(f"the Keras run of pair {pair} failed: {lines[-1] if lines else 'no output'}")
    return cpu, wall, json.loads((folder / "keras.json").read_text())["test_mse"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m grubench.peer", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="the main command's overrides, e.g. dataset.seq_len=100")
    parser.add_argument("--model", default="gru", help="gru, lstm or rnn (the main command's +model)")
    parser.add_argument("--pairs", type=int, default=3, help="grubench and Keras runs, in turns")
    parser.add_argument("--init", default="torch", choices=["torch", "keras"], help="grubench's model.init")
    parser.add_argument("--threads", default="1",
                        help="threads of each side: 1 (one core each) or null (their defaults)")
    parser.add_argument("--out", default="peer", help="folder for peer.csv and the runs' files")
    parser.add_argument("--keras-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keras_child:
        keras_child(Path(args.keras_child), one_core=args.threads == "1")
        return
    if args.pairs < 1:
        raise ConfigError(f"--pairs must be at least 1, got {args.pairs}")
    if args.threads not in ("1", "null"):
        raise ConfigError(f"--threads must be 1 or null, got {args.threads!r}")
    threads = 1 if args.threads == "1" else None
    missing = [name for name in ("keras", "jax") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the peer benchmark needs {' and '.join(missing)}: pip install 'grubench[peer]'")
    settings, cfg = work(args.model, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="runs-", dir=out))
    write_data(cfg, folder / "data.npz")
    (folder / "work.json").write_text(json.dumps(settings))

    rows = []
    print(f"{'pair':>4}  {'system':9} {'CPU s':>7} {'wall s':>7} {'test MSE':>9}", flush=True)
    for pair in range(1, args.pairs + 1):
        order = ["grubench", "keras"] if pair % 2 else ["keras", "grubench"]
        for system in order:
            if system == "grubench":
                cpu, wall, mse = run_grubench(args.model, args.init, threads, args.overrides, folder, pair)
            else:
                cpu, wall, mse = run_keras(threads, folder, pair)
            rows.append({"pair": pair, "system": system, "cpu_s": cpu, "wall_s": wall, "test_mse": mse})
            print(f"{pair:>4}  {system:9} {cpu:>7.1f} {wall:>7.1f} {mse:>9.4f}", flush=True)
    with open(out / "peer.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(summary(rows, args.init, threads))


def summary(rows: list[dict], init: str, threads: int | None) -> str:
    """The medians over pairs of grubench / Keras in CPU and wall seconds, and both test MSEs."""
    by = {(r["pair"], r["system"]): r for r in rows}
    pairs = sorted({r["pair"] for r in rows})
    cpu = [by[p, "grubench"]["cpu_s"] / by[p, "keras"]["cpu_s"] for p in pairs]
    wall = [by[p, "grubench"]["wall_s"] / by[p, "keras"]["wall_s"] for p in pairs]
    mse = {s: statistics.median(by[p, s]["test_mse"] for p in pairs) for s in ("grubench", "keras")}
    return (f"grubench (model.init={init}, threads={threads or 'default'}) / Keras 3 on JAX, median of {len(pairs)} "
            f"pairs: CPU {statistics.median(cpu):.2f} (pairs {', '.join(f'{r:.2f}' for r in cpu)}), "
            f"wall {statistics.median(wall):.2f} (pairs {', '.join(f'{r:.2f}' for r in wall)}); "
            f"test MSE grubench {mse['grubench']:.4f}, Keras {mse['keras']:.4f} (medians)")


if __name__ == "__main__":
    run_command("grubench.peer", main)
