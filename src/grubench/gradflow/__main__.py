"""`python -m grubench.gradflow [--models rnn,gru,lstm] [--out DIR] [overrides] [tracking.uri=STORE]`:
the gradient flow of several models at initialisation, side by side (claim C2)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from grubench.gradflow.callback import class_tag, metric_name
from grubench.gradflow.measure import TOL, FlowCurve, compare, plot, write_csv
from grubench.harness.arguments import store_argument
from grubench.harness.command import run_command
from grubench.harness.runs import tracked_run
from grubench.harness.store import Store


def main(argv: list[str] | None = None) -> None:
    """`python -m grubench.gradflow [--models rnn,gru,lstm] [--out DIR] [overrides] [tracking.uri=STORE]`"""
    parser = argparse.ArgumentParser(prog="python -m grubench.gradflow", description=compare.__doc__)
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. dataset.seq_len=100; tracking.uri=STORE also logs one run per model")
    parser.add_argument("--models", default="rnn,gru,lstm",
                        help="comma-separated conf/model names; lstm,lstm_fb1,lstm_chrono: the LSTM's initialisations")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-positions", type=int, default=128)
    parser.add_argument("--out", default="gradient_flow", help="folder for curves.csv and gradient_flow.png")
    args = parser.parse_args(argv)

    curves = compare(args.models.split(","), args.overrides, args.batch_size, args.max_positions)
    out = Path(args.out)
    write_csv(curves, out / "curves.csv")
    plot(curves, out / "gradient_flow.png", title="gradient flow at initialisation " + " ".join(args.overrides))
    print(table(curves))
    print(f"curves: {out / 'curves.csv'}  plot: {out / 'gradient_flow.png'}")
    if any(o.startswith("tracking.uri=") for o in args.overrides):
        record(curves, args.overrides, out)


def table(curves: list[FlowCurve]) -> str:
    """One line per model and quantity: the slope, the change over the whole length, the class."""
    header = f"{'model':<12} {'quantity':<8} {'slope (log10/step)':>18} {'over T-1 steps':>14}  class"
    lines = [f"{header} (flat: |slope| <= {TOL:g})"]
    for c in curves:
        whole = c.slope * (c.steps[-1] - c.steps[0])
        lines.append(f"{c.model:<12} {c.quantity:<8} {c.slope:>+18.5f} {whole:>+14.2f}  {c.kind}")
    return "\n".join(lines)


def record(curves: list[FlowCurve], overrides: list[str], out: Path) -> None:
    """One MLflow run per model in experiment `gradient_flow` of the store `tracking.uri=` names:
    the metrics grad/<quantity>_slope_step0, the tags grad/<quantity>_class_step0, the CSV and plot."""
    uri, _ = store_argument(overrides)
    store = Store.open(uri, "gradient_flow")
    for model in dict.fromkeys(c.model for c in curves):
        mine = [c for c in curves if c.model == model]
        name = f"{model}-init-{'-'.join(overrides)}".rstrip("-")
        with tracked_run(store, name, {"model": model, "claims": "C2", "overrides": " ".join(overrides)}) as run:
            write_csv(mine, out / model / "curves.csv")
            run.log_metrics({metric_name(c.quantity, 0): c.slope for c in mine if not math.isnan(c.slope)})
            run.set_tags({class_tag(c.quantity, 0): c.kind for c in mine})
            run.log_artifact(out / model / "curves.csv", "gradient_flow")
            run.log_artifact(out / "gradient_flow.png", "gradient_flow")
    print(f"  browse: {store.browse_hint()}")


if __name__ == "__main__":
    run_command("grubench.gradflow", main)
