"""MNIST-1D (Greydanus & Kobak): ten 1-D digit templates, padded, translated, scaled, sheared and
noised into sequences of 40 real values. Generated offline by the `mnist1d` package, cached.

The package's generator with its default arguments makes 5,000 sequences, the first 4,000 for
training and the last 1,000 for testing, from its own seed (42). The generated arrays are cached
on disk under a name made from the generation arguments, so a second run reads them back.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from grubench.data.base import SequenceDataModule, cache_root
from grubench.spec import TaskSpec


def generation_args(generator_seed: int = 42, shuffle_seq: bool = False) -> dict:
    """The `mnist1d` package's default generation arguments, with the seed and `shuffle_seq`
    set (the download URL, which generation never uses, is left out)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(seed=generator_seed, shuffle_seq=shuffle_seq)
    return args


def cache_file(args: dict, cache_dir: Path) -> Path:
    """`<cache_dir>/mnist1d-<hash of the generation arguments>.npz`."""
    key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"mnist1d-{key}.npz"


def generate(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator; the global random state it reseeds is put back afterwards."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


def load_or_generate(args: dict, cache_dir: Path) -> dict[str, np.ndarray]:
    """The generated arrays, read from the cache or generated and written there."""
    path = cache_file(args, cache_dir)
    if path.exists():
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    data = generate(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + f".{random.getrandbits(32):08x}.tmp.npz")
    np.savez(partial, **data)
    partial.replace(path)  # atomic: a parallel job never reads half a file
    path.with_suffix(".json").write_text(json.dumps(args, indent=1, sort_keys=True))
    return data


class MNIST1DDataModule(SequenceDataModule):
    """MNIST-1D classification: x [N, 40, 1] float (standardised by the generator), y [N] long,
    10 classes. Chance accuracy 0.1.

    The validation set is the last `val_size` sequences of the generated training set (the
    generator has already shuffled them), so it is fixed; the training set is the rest, and
    the test set is the generator's own 1,000. With `shuffle_seq` the generator applies one
    fixed permutation to the 40 steps of every sequence, which destroys the spatial order.

    `val_size=0` is the paper's protocol: all 4,000 sequences train, the validation set is
    empty (Lightning then skips validation), and the run should test its final weights
    (`test_weights=last`), since there is nothing to select a checkpoint on.

    Published test accuracies (Greydanus & Kobak): logistic regression 32%, MLP 68%,
    CNN 94%, GRU 91%.

    Args:
        generator_seed: the generator's seed (42 is the package's and the paper's).
        shuffle_seq: permute the time steps (the generator's `shuffle_seq`).
        val_size: sequences moved from the training set to the validation set (0: none, the
            paper's protocol).
        cache_dir: where the generated arrays are kept; None: `cache_root()/mnist1d`.
    """

    def __init__(self, generator_seed: int = 42, shuffle_seq: bool = False, val_size: int = 500,
                 cache_dir: str | None = None, batch_size: int = 100, seed: int = 0, limit: int | None = None):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 0:
            raise ValueError(f"val_size must be an integer >= 0, got {val_size!r}")
        if not isinstance(shuffle_seq, bool):
            raise ValueError(f"shuffle_seq must be true or false, got {shuffle_seq!r}")
        self.args = generation_args(generator_seed, shuffle_seq)
        train_total = int(self.args["num_samples"] * self.args["train_split"])
        if val_size >= train_total:
            raise ValueError(f"val_size must leave training sequences: {val_size} >= {train_total}")
        self.val_size = val_size
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else cache_root() / "mnist1d"
        self.spec = TaskSpec(
            name="mnist1d", input_kind="real", input_size=1, output="classification", num_outputs=10,
            seq_len=self.args["final_seq_length"], metric="acc", chance={"acc": 0.1, "loss": float(np.log(10))},
        )

    def make_splits(self):
        data = load_or_generate(self.args, self.cache_dir)

        def tensors(x, y):
            return torch.tensor(x, dtype=torch.float32).unsqueeze(-1), torch.tensor(y, dtype=torch.long)

        x, y = data["x"], data["y"]
        cut = len(y) - self.val_size
        return {
            "train": tensors(x[:cut], y[:cut]),
            "val": tensors(x[cut:], y[cut:]),
            "test": tensors(data["x_test"], data["y_test"]),
        }
