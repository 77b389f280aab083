"""How time grows with sequence length and hidden size: fitted power-law exponents.

For each (model, device, precision, batch), over the cells that ran, least squares on

    log t = c + p log T + q log H

gives p (expected 1: one step after another, each the same work) and q (expected 2: the
recurrent product is H x H, and the input product I x H with I = H by default). Measured
exponents below the expected ones mean a fixed cost per step (kernel launches, Python, memory
traffic) still dominates at the sizes in the grid. A dimension with one value in the grid gets NaN.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

EXPECTED = {"p_seq_len": 1.0, "q_hidden": 2.0}
GROUP = ("model", "device", "precision", "batch")


def fit(rows: list[dict], time_key: str = "train_ms") -> dict:
    """Exponents p, q of `time_key` over `rows` (dicts with seq_len, hidden and the time), and R^2."""
    rows = [r for r in rows if r.get("status") == "ok" and r[time_key] > 0]
    result = {"cells": len(rows), "p_seq_len": math.nan, "q_hidden": math.nan, "r2": math.nan}
    if len(rows) < 2:
        return result
    columns = [np.ones(len(rows))]
    names = []
    for name, key in (("p_seq_len", "seq_len"), ("q_hidden", "hidden")):
        values = np.log([float(r[key]) for r in rows])
        if len(set(values)) > 1:
            columns.append(values)
            names.append(name)
    if not names:
        return result
    X = np.stack(columns, axis=1)
    t = np.log([r[time_key] for r in rows])
    coef, *_ = np.linalg.lstsq(X, t, rcond=None)
    residual = t - X @ coef
    total = ((t - t.mean()) ** 2).sum()
    result["r2"] = float(1 - (residual**2).sum() / total) if total > 0 else math.nan
    for name, value in zip(names, coef[1:]):
        result[name] = float(value)
    return result


def exponents(rows: list[dict]) -> list[dict]:
    """One row per (model, device, precision, batch): exponents of the training and forward times."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in GROUP)].append(row)
    table = []
    for key, members in groups.items():
        train, forward = fit(members, "train_ms"), fit(members, "fwd_ms")
        if train["cells"] < 2:
            continue
        table.append({
            **dict(zip(GROUP, key)), "cells": train["cells"],
            "p_train": train["p_seq_len"], "q_train": train["q_hidden"], "r2_train": train["r2"],
            "p_fwd": forward["p_seq_len"], "q_fwd": forward["q_hidden"], "r2_fwd": forward["r2"],
        })
    return table


def format_table(table: list[dict]) -> str:
    header = (f"{'model':<12} {'device':<6} {'precision':<10} {'batch':>5} {'cells':>5}   "
              f"{'p train':>7} {'p fwd':>6} (exp 1)   {'q train':>7} {'q fwd':>6} (exp 2)   {'R2 train':>8}")
    lines = ["scaling: time ~ T^p H^q, least squares per model over the cells that ran", header]
    for r in table:
        lines.append(f"{r['model']:<12} {r['device']:<6} {r['precision']:<10} {r['batch']:>5} {r['cells']:>5}   "
                     f"{r['p_train']:>7.2f} {r['p_fwd']:>6.2f}           {r['q_train']:>7.2f} {r['q_fwd']:>6.2f}"
                     f"           {r['r2_train']:>8.3f}")
    return "\n".join(lines)
