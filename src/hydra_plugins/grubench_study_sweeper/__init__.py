"""grubench's study sweeper, where Hydra looks for plugins.

Hydra builds a sweeper only from a class defined under the `hydra_plugins` namespace package;
the study itself lives in grubench.harness.study, its config in
grubench/conf/hydra/sweeper/study.yaml.
"""

from grubench.harness.study import StudySweeper


class GrubenchStudySweeper(StudySweeper):
    """`hydra/sweeper=study`; see grubench.harness.study."""
