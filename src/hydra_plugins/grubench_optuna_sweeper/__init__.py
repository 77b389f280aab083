"""grubench's Optuna sweeper, where Hydra looks for plugins.

Hydra builds a sweeper only from a class defined under the `hydra_plugins` namespace package;
the search itself lives in grubench.optuna_sweeper, its config in
grubench/conf/hydra/sweeper/grubench_optuna.yaml.
"""

from grubench.optuna_sweeper import OptunaSweeper


class GrubenchOptunaSweeper(OptunaSweeper):
    """`hydra/sweeper=grubench_optuna`; see grubench.optuna_sweeper."""
