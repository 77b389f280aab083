"""grubench: how GRU, LSTM and simple RNNs really compare, with numbers you can rerun."""

import os

from omegaconf import OmegaConf

# ${pid:} names a run's output folder (conf/config.yaml): runs started in the same microsecond
# by two processes still get folders of their own. Cached, so every use in one config agrees.
OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)


def _choices(group: str) -> str:
    from grubench.config import choices

    return ", ".join(choices(group))


# ${choices:model} lists a group's configs: `python -m grubench --help` (conf/config.yaml, hydra.help).
OmegaConf.register_new_resolver("choices", _choices, replace=True)
