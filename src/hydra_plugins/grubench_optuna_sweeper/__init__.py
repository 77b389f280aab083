"""grubench's Optuna sweeper, where Hydra looks for plugins.

Hydra builds a sweeper only from a class defined under the `hydra_plugins` namespace package,
and imports every plugin module at start-up, `--help` included: so this module stays light and
the search itself (grubench.harness.search, with Optuna, MLflow and Lightning behind it) loads
only when a search runs. Its config: conf/hydra/sweeper/grubench_optuna.yaml.
"""

from typing import Any

from hydra.plugins.sweeper import Sweeper


class GrubenchOptunaSweeper(Sweeper):
    """`hydra/sweeper=grubench_optuna`; see grubench.harness.search."""

    def __init__(self, **settings: Any):
        from grubench.harness.search import OptunaSweeper

        self.search = OptunaSweeper(**settings)

    def setup(self, **kwargs: Any) -> None:
        self.search.setup(**kwargs)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
