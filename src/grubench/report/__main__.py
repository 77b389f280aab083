"""`python -m grubench.report`: the claims report, from the runs MLflow recorded.

    python -m grubench.report [tracking.uri=STORE] [--out DIR] [--no-log]

Writes DIR/report.md and DIR/report.html (figures embedded) with the table of verdicts, and
logs both, with the figures, as artifacts of a run in the MLflow experiment `report`.
"""

from __future__ import annotations

import argparse
import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from markdown import Markdown

from grubench.claims import CLAIMS
from grubench.harness.arguments import add_store_argument, existing_store
from grubench.harness.command import run_command
from grubench.harness.runs import tracked_run
from grubench.harness.store import Store
from grubench.report import plots
from grubench.report.evidence import claim_runs, load_curves, load_runs, training_runs
from grubench.report.literature import PUBLISHED
from grubench.report.verdicts import RULES, Verdict, all_verdicts, memory_lengths

VERDICT_COLOURS = {"supported": "#1a7f37", "not supported": "#cf222e", "mixed": "#bc4c00", "inconclusive": "#6e7781"}
IMAGE_SRC = re.compile(r'(<img [^>]*src=")([^"]+)(")')  # python-markdown's <img alt=".." src="NAME.png" />
CURVES = {"C1": "C1: validation score while training (mean, band: lowest to highest seed)",
          "C4": "C4: LSTM gate ablations while training", "C5": "C5: GRU and LSTM while training"}


def figures(frame, out: Path, uri: str | None = None) -> dict[str, list[Path]]:
    """{claim: [figure paths]} for the claims that have runs to draw; with `uri`, the learning
    curves too (read from the store, one request per run)."""
    runs = {claim: claim_runs(frame, claim) for claim in RULES}
    made = {
        "C1": [plots.memory_length(runs["C1"], memory_lengths(runs["C1"]), out / "c1_memory_length.png"),
               plots.score_vs_length(runs["C1"], out / "c1_score_vs_length.png")],
        "C2": [plots.gradient_slopes(runs["C2"], out / "c2_gradient_slopes.png")],
        "C3": [plots.cost_per_model(runs["C3"], out / "c3_cost_per_model.png")],
        "C4": [plots.ablations(runs["C4"], out / "c4_ablations.png")],
        "C5": [plots.cost_per_model(runs["C5"], out / "c5_cost_per_model.png")],
    }
    if uri:
        for claim, title in CURVES.items():
            if not runs[claim].empty:
                curves = load_curves(uri, runs[claim])
                made[claim].insert(0, plots.learning_curves(runs[claim], curves, out / f"{claim.lower()}_curves.png",
                                                            title))
    return {claim: [p for p in paths if p] for claim, paths in made.items()}


def cell(value) -> str:
    return str(value).replace("|", "/")  # a pipe would end the Markdown table cell


def table(rows: list[dict]) -> list[str]:
    """Rows as a Markdown table: the setting, every model present, the effect, the outcome in the
    claim's words, the study (its budget is named once, under "Rests on")."""
    if not rows:
        return []
    fixed = ("setting", "effect", "test", "said", "outcome", "deciding", "study")
    models = list(dict.fromkeys(k for row in rows for k in row if k not in fixed))
    columns = ["setting", *models, "effect", "outcome", "study"]
    value = {"outcome": lambda r: r["said"], "study": lambda r: r["study"].split(" [")[0]}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(value[c](r) if c in value else r.get(c, "")) for c in columns) + " |"
              for r in rows]
    return lines


def counts(frame) -> tuple[int, int]:
    """(training runs, training runs that bear on no claim)."""
    runs = training_runs(frame)
    if runs.empty:
        return 0, 0
    claims = runs["tags.claims"].fillna("") if "tags.claims" in runs else pd.Series("", index=runs.index)
    return len(runs), int((claims == "").sum())


def markdown(verdicts: list[Verdict], made: dict[str, list[Path]], uri: str, run_count: tuple[int, int]) -> str:
    trained, skipped = run_count
    lines = ["# grubench claims report", "",
             f"Made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {trained} training runs (finished or "
             f"failed) in `{uri}`" + (f"; {skipped} of them bear on no claim and are skipped" if skipped else "")
             + ". Each claim is decided on the settings its study's presets named before it ran, two models "
             "compared seed by seed: the steps to solve by a log-rank test where the task has a solved level, else "
             "the paired test scores by a paired t-test (the exact sign-flip test beside); a tie only by an equivalence test against the "
             "margin declared for the task; Holm's correction over a claim's settings (5%). A failed run counts as "
             "a run that learned nothing. Effects are the claim's model minus its rival, with 95% intervals. The "
             "rules are in `grubench/report/verdicts.py`, the margins in `grubench/levels.py`.", "",
             "| claim | the document says | verdict | the deciding settings: outcome, effect (95% interval) or "
             "solved counts, seeds |",
             "|---|---|---|---|"]
    for v in verdicts:
        decided = "<br>".join(v.deciding) if v.deciding else ("-" if not v.rows else "no deciding setting ran")
        lines.append(f"| {v.claim} | {cell(CLAIMS[v.claim])} | **{v.verdict}** | {cell(decided)} |")
    for v in verdicts:
        lines += ["", f"## {v.claim}: {CLAIMS[v.claim]}", "", f"Verdict: **{v.verdict}**. {v.evidence}.", ""]
        lines += [*(f"{line}." for line in v.extra), *([""] if v.extra else [])]
        deciding = [r for r in v.rows if r["deciding"]]
        context = [r for r in v.rows if not r["deciding"]]
        if deciding:
            lines += ["Deciding settings:", "", *table(deciding), ""]
        if context:
            lines += ["Shown beside (decides nothing):", "", *table(context), ""]
        if v.studies:
            lines += ["Rests on: " + "; ".join(f"`{s}`" for s in v.studies) + ".", ""]
        lines += [f"Published: {PUBLISHED[v.claim]}", ""]
        if v.literature:
            lines += [f"Ours against the literature: {v.literature}", ""]
        for figure in made.get(v.claim, []):
            lines += ["", f"![{v.claim}]({figure.name})"]
    return "\n".join(lines) + "\n"


def to_html(md_text: str, out: Path) -> str:
    """report.md as one HTML page: python-markdown (its "tables" extension) converts the text,
    then each image named in it (a file in `out`) is embedded as a base64 data URI and the
    verdict words are coloured (VERDICT_COLOURS). Returns the whole page."""
    converter = Markdown(extensions=["tables"])
    # the report's text is text: a "<" in it is shown, never read as HTML
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    html_body = converter.convert(md_text).replace("&lt;br&gt;", "<br>")  # the one tag the text uses: a line in a cell
    html_body = IMAGE_SRC.sub(lambda m: m[1] + embedded_png(out / m[2]) + m[3], html_body)
    for verdict, colour in VERDICT_COLOURS.items():  # the verdict words stand out by colour
        html_body = html_body.replace(f"<strong>{verdict}</strong>",
                                      f'<strong style="color:{colour}">{verdict}</strong>')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top;font-size:90%}th{background:#f0f0f0}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>grubench claims report</title>"
            f"<style>{style}</style></head><body>{html_body}</body></html>\n")


def embedded_png(path: Path) -> str:
    """The PNG file at `path` as a data URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_report(uri: str, out: Path, log: bool = True) -> list[Verdict]:
    """Write report.md, report.html and the figures into `out` from the store `uri` (which exists)."""
    frame = load_runs(uri)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = all_verdicts(frame)
    made = figures(frame, out, uri)
    text = markdown(verdicts, made, uri, counts(frame))
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, out))
    if log:
        with tracked_run(Store.open(uri, "report"), "claims report") as run:
            run.set_tags({f"verdict/{v.claim}": v.verdict for v in verdicts})
            for path in [out / "report.md", out / "report.html", *[p for ps in made.values() for p in ps]]:
                run.log_artifact(path)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grubench.report", description=__doc__.splitlines()[0])
    add_store_argument(parser)
    parser.add_argument("--out", default="report", type=Path, help="folder for report.md, report.html and figures")
    parser.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow run")
    args = parser.parse_args(argv)
    verdicts = write_report(existing_store(args.store), args.out, log=not args.no_log)
    print(verdict_lines(verdicts) + f"\nreport: {(args.out / 'report.html').resolve()}")
    return 0


def verdict_lines(verdicts: list[Verdict]) -> str:
    """A line per claim: its id, its verdict and why."""
    width = max(len(v.verdict) for v in verdicts)
    return "\n".join(f"{v.claim}  {v.verdict:<{width}}  {v.evidence}" for v in verdicts)


if __name__ == "__main__":
    run_command("grubench.report", main)
