"""Cost measurements: `python -m grubench.bench` (speed, memory, FLOPs over a grid of cells) and
`python -m grubench.bench.overhead` (what the training harness costs per step)."""
