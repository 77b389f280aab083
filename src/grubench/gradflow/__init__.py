"""Gradient flow through time (claim C2): the measurement (measure.py: dL/dx_t, the whole state,
the cell state, and their slopes), the training callback at fixed steps (callback.py) and the
command (`python -m grubench.gradflow`)."""

from grubench.gradflow.measure import (
    QUANTITIES,
    TOL,
    FlowCurve,
    classify,
    compare,
    default_positions,
    fit_slope,
    gradient_flow,
    plot,
    write_csv,
)

__all__ = ["QUANTITIES", "TOL", "FlowCurve", "classify", "compare", "default_positions", "fit_slope",
           "gradient_flow", "plot", "write_csv"]
