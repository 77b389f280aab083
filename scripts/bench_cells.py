"""Training-step time of the cell-loop models against torch's fused layers (a benchmark, not a test).

    python scripts/bench_cells.py                       # batch 64, length 100, hidden 128
    python scripts/bench_cells.py --rounds 15 --no-compile --threads 1
    python scripts/bench_cells.py --models gru,lstm,mingru,minlstm --loop --no-compile --threads 1
    python scripts/bench_cells.py --models lstm,lstm_eq,lstm_nfg,gru,gru_loop --loop --no-compile --threads 1

Each model is built from its packaged config (`+model=NAME`) for a regression task with 2 input
features (the adding task's; `--input` changes it), so it is the network a run trains. One training step is forward + MSE loss + backward + Adam update on one
random batch. The models take turns: every round times `--steps` steps of each model, in a new
order each round, so that load from other processes falls on all of them alike. Per model it
prints the median step time over all rounds; per cell-loop model, the median over rounds of its
time divided by its fused twin's time in the same round (gru_doc, gru_loop, mingru -> gru; janet,
lstm_loop, minlstm -> lstm). With compile, the `+compile` rows run the cell step through torch.compile
(compilation happens in an untimed warm-up). With --loop, a `+loop` row beside each cell-loop model
runs it on the reference step loop (`model.recurrent.impl=loop`, and for the minimal RNNs
`model.recurrent.parallel=false`): the model's own row runs what `impl=auto` chose (the `path`
column), so the two rows are auto against the loop it replaced; for `gru` the `+fused` row is
torch's own GRU (`impl=fused`), which the cell loops are then divided by, and the `gru` row's
ratio is grubench's CPU kernel against it.
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import statistics
import time

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from grubench.harness.allocator import keep_freed_memory
from grubench.models import counting
from grubench.models.layers import compile_problem
from grubench.spec import TaskSpec

TWINS = {"gru": "gru", "gru_loop": "gru", "gru_doc": "gru", "lstm": "lstm", "lstm_loop": "lstm", "janet": "lstm",
         "mingru": "gru", "minlstm": "lstm", "lstm_fb1": "lstm", "lstm_eq": "lstm", "lstm_eq_chrono": "lstm",
         "lstm_nfg": "lstm", "lstm_nig": "lstm", "lstm_nog": "lstm", "lstm_cifg": "lstm", "rnn_loop": "rnn"}


PARALLEL = ("mingru", "minlstm")   # configs with model.recurrent.parallel


def compose_model(overrides: list[str]):
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def is_cell_loop(name: str) -> bool:
    """Whether the model runs a cell in `Recurrent` (its config has recurrent.cell)."""
    return compose_model([f"+model={name}"]).model.recurrent.get("cell") is not None


def has_kernel(name: str) -> bool:
    """Whether the model is a torch layer with grubench's kernel beside it (`gru`: recurrent.impl)."""
    return not is_cell_loop(name) and compose_model([f"+model={name}"]).model.recurrent.get("impl") is not None


def build(name: str, hidden: int, seq_len: int, features: int, compiled: bool, loop: bool = False) -> torch.nn.Module:
    overrides = [f"+model={name}", f"model.hidden_size={hidden}"]
    if compiled:
        overrides.append("model.recurrent.compile=true")
    if loop and has_kernel(name):
        overrides.append("model.recurrent.impl=fused")   # the torch layer the kernel replaced
    elif loop:
        overrides.append("model.recurrent.impl=loop")
        if name in PARALLEL:
            overrides.append("model.recurrent.parallel=false")
    cfg = compose_model(overrides)
    task = TaskSpec(name="adding", input_kind="real", input_size=features, output="regression", num_outputs=1,
                    seq_len=seq_len, metric="mse", chance={"mse": 1 / 6})
    return instantiate(cfg.model, _partial_=True)(task=task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--input", type=int, default=2, help="input features (the adding task has 2)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model and round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--loop", action="store_true", help="add step-by-step rows for mingru and minlstm")
    parser.add_argument("--models", default="gru,gru_loop,gru_doc,lstm,lstm_loop,janet")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()   # as a training run does
    device = torch.device(args.device)
    torch.manual_seed(0)

    names = args.models.split(",")
    rows = [(name, False, False) for name in names]
    if args.loop:
        rows += [(name, False, True) for name in names if is_cell_loop(name) or has_kernel(name)]
    if not args.no_compile:
        problem = compile_problem()
        if problem:
            print(f"torch.compile unavailable here ({problem}): compile rows left out")
        else:
            rows += [(name, True, False) for name in names if is_cell_loop(name)]

    x = torch.rand(args.batch, args.length, args.input, device=device)
    y = torch.rand(args.batch, device=device)
    models, optimizers = {}, {}
    for name, compiled, loop in rows:
        key = name + ("+compile" if compiled else "") + (("+fused" if has_kernel(name) else "+loop") if loop else "")
        models[key] = build(name, args.hidden, args.length, args.input, compiled, loop).to(device)
        optimizers[key] = torch.optim.Adam(models[key].parameters(), lr=1e-3)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train_step(key):
        optimizers[key].zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(models[key](x), y)
        loss.backward()
        optimizers[key].step()

    for key in models:  # warm-up, compilation included
        for _ in range(2):
            train_step(key)

    times = {key: [] for key in models}   # median step time of each round, seconds
    order = list(models)
    for _ in range(args.rounds):
        random.shuffle(order)
        for key in order:
            steps = []
            for _ in range(args.steps):
                sync()
                start = time.perf_counter()
                train_step(key)
                sync()
                steps.append(time.perf_counter() - start)
            times[key].append(statistics.median(steps))

    print(f"training step (forward + backward + Adam), batch {args.batch}, length {args.length}, "
          f"hidden {args.hidden}, input {args.input}; {args.rounds} rounds x {args.steps} steps, interleaved")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'model':18} {'path':>5} {'params':>7} {'FLOPs/step':>10} {'median ms':>10} {'IQR ms':>13} "
          f"{'/ fused twin':>12} {'ratio IQR':>11}")
    for key, seconds in times.items():
        name = key.split("+")[0]
        recurrent = models[key].recurrent
        s = counting.structure(recurrent)
        ms = [1000 * t for t in seconds]
        q = statistics.quantiles(ms, n=4)
        path = getattr(models[key], "last_recurrent_impl", None) or "?"
        line = (f"{key:18} {path:>5} {counting.parameters(s):>7,} {counting.flops(s):>10,} {statistics.median(ms):>10.1f} "
                f"{q[0]:>6.1f}-{q[2]:<6.1f}")
        twin = TWINS.get(name)
        if twin and twin + "+fused" in times:   # torch's own layer, not grubench's kernel
            twin += "+fused"
        if twin and twin != key and twin in times:
            ratios = [a / b for a, b in zip(seconds, times[twin])]
            rq = statistics.quantiles(ratios, n=4)
            line += f" {statistics.median(ratios):>12.2f} {rq[0]:>5.2f}-{rq[2]:<5.2f}"
        print(line)


if __name__ == "__main__":
    main()
