"""grubench's Optuna sweeper, where Hydra looks for plugins.

Hydra builds a sweeper only from a class defined under the `hydra_plugins` namespace package;
the search itself lives in grubench.harness.search, its config in
grubench/conf/hydra/sweeper/grubench_optuna.yaml.
"""

from grubench.harness.search import OptunaSweeper


class GrubenchOptunaSweeper(OptunaSweeper):
    """`hydra/sweeper=grubench_optuna`; see grubench.harness.search."""
