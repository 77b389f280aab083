"""`python -m grubench.gradflow [--models rnn,gru,lstm] [--out DIR] [overrides] [tracking.uri=STORE]`:
the gradient flow of several models at initialisation, side by side (claim C2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from grubench.gradflow.measure import compare, finite, plot, write_csv
from grubench.harness.arguments import store_argument
from grubench.harness.command import run_command
from grubench.harness.runs import tracked_run
from grubench.harness.store import Store


def main(argv: list[str] | None = None) -> None:
    """`python -m grubench.gradflow [--models rnn,gru,lstm] [--out DIR] [overrides] [tracking.uri=STORE]`"""
    parser = argparse.ArgumentParser(prog="python -m grubench.gradflow", description=compare.__doc__)
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. dataset.seq_len=100; tracking.uri=STORE also logs one run per model")
    parser.add_argument("--models", default="rnn,gru,lstm", help="comma-separated conf/model names")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-positions", type=int, default=128)
    parser.add_argument("--out", default="gradient_flow", help="folder for curves.csv and gradient_flow.png")
    args = parser.parse_args(argv)

    curves = compare(args.models.split(","), args.overrides, args.batch_size, args.max_positions)
    out = Path(args.out)
    write_csv(curves, out / "curves.csv")
    plot(curves, out / "gradient_flow.png", title="gradient flow at initialisation " + " ".join(args.overrides))
    for curve in curves:
        print(f"{curve.model:<12} grad/decay_log10 = {curve.decay_log10:+.3f}   "
              f"||g_1|| = {curve.norms[0]:.3e}   ||g_T|| = {curve.norms[-1]:.3e}")
    print(f"curves: {out / 'curves.csv'}  plot: {out / 'gradient_flow.png'}")
    if any(o.startswith("tracking.uri=") for o in args.overrides):
        record(curves, args.overrides, out)


def record(curves: list, overrides: list[str], out: Path) -> None:
    """One MLflow run per model in experiment `gradient_flow` of the store `tracking.uri=` names."""
    uri, _ = store_argument(overrides)
    store = Store.open(uri, "gradient_flow")
    for curve in curves:
        name = f"{curve.model}-init-{'-'.join(overrides)}".rstrip("-")
        with tracked_run(store, name, {"model": curve.model, "claims": "C2", "overrides": " ".join(overrides)}) as run:
            write_csv([curve], out / curve.model / "curves.csv")
            run.log_metrics({"grad/decay_log10": finite(curve.decay_log10)})
            run.log_artifact(out / curve.model / "curves.csv", "gradient_flow")
            run.log_artifact(out / "gradient_flow.png", "gradient_flow")
    print(f"  browse: {store.browse_hint()}")

if __name__ == "__main__":
    run_command("grubench.gradflow", main)
