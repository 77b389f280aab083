"""grubench's Optuna sweeper, where Hydra looks for plugins.

Hydra builds a sweeper only from a class defined under the `hydra_plugins` namespace package,
and imports every module here whenever it starts, `--help` and refused commands included: so
this module imports only Hydra, and the search (grubench.harness.search, which loads Optuna,
MLflow and Lightning) only when a search is built. Its config: conf/hydra/sweeper/grubench_optuna.yaml.
"""

from hydra.plugins.sweeper import Sweeper


class GrubenchOptunaSweeper(Sweeper):
    """`hydra/sweeper=grubench_optuna`: the search of grubench.harness.search, loaded when built."""

    def __init__(self, **options):
        from grubench.harness.search import OptunaSweeper

        self.search = OptunaSweeper(**options)

    def setup(self, **kwargs) -> None:
        self.search.setup(**kwargs)

    def sweep(self, arguments):
        return self.search.sweep(arguments)
