"""grubench: how GRU, LSTM and simple RNNs really compare, with numbers you can rerun."""

import os

from omegaconf import OmegaConf

# ${pid:} names a run's output folder (conf/config.yaml): runs started in the same microsecond
# by two processes still get folders of their own. Cached, so every use in one config agrees.
OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True, replace=True)
