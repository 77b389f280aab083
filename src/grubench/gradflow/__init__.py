"""Gradient flow through time (claim C2): the measurement (measure.py), the training callback
(callback.py) and the command (`python -m grubench.gradflow`)."""

from grubench.gradflow.measure import (
    FlowCurve,
    compare,
    default_positions,
    gradient_flow,
    plot,
    write_csv,
)

__all__ = ["FlowCurve", "compare", "default_positions", "gradient_flow", "plot", "write_csv"]
