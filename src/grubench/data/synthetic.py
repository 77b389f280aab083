"""Synthetic long-memory tasks, generated from the seed with no download.

Each split has its own random stream, derived from (seed, split), so the validation and test
sets stay the same whatever the training-set size, and every epoch sees the same data.

`generator_device` says where the data is drawn: `cpu` (the default: the same data on every
machine), or `cuda` / `auto` (on the GPU when there is one). Drawn on the GPU, a data set of
50,000 sequences of 1,000 steps takes milliseconds instead of seconds of a CPU core that jobs
running side by side share, and never crosses to the device; but the GPU's random stream is
not the CPU's, so the sequences differ from the CPU's for the same seed (each run records
where its data was drawn as the param `dataset/generator_device`; compare runs drawn alike).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from grubench.data.base import SequenceDataModule
from grubench.spec import TaskSpec, require_positive

SPLITS = ("train", "val", "test")


def split_generator(seed: int, split: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on `device` for one split, independent of the other splits' sizes."""
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def generation_device(name: str) -> torch.device:
    """`cpu`, `cuda`, or `auto` (cuda when there is a GPU, else cpu) as a device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"generator_device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


class GeneratedDataModule(SequenceDataModule):
    """A task drawn from the seed: a training, a validation and a test split of given sizes, each
    from its own random stream (`split_generator`). Subclasses set `self.spec` and implement
    `generate(n, generator)`; `bytes_per_step` sizes the memory drawing them takes."""

    bytes_per_step = 16

    def __init__(self, seq_len: int, train_size: int, val_size: int, test_size: int, batch_size: int, seed: int,
                 limit: int | None, generator_device: str):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        require_positive(seq_len=seq_len, train_size=train_size, val_size=val_size, test_size=test_size)
        self.generator_device = generation_device(generator_device)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def make_splits(self):
        return {split: self.generate(n, split_generator(self.seed, split, self.generator_device))
                for split, n in self.sizes.items()}

    def planned_bytes(self) -> int:
        return sum(self.sizes.values()) * self.spec.seq_len * self.bytes_per_step

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class AddingDataModule(GeneratedDataModule):
    """The adding problem (Hochreiter & Schmidhuber 1997), as in Arjovsky et al. 2016.

    Each step carries two features: a value v_t ~ U[0, 1] and a marker m_t in {0, 1}. Exactly
    two steps are marked, one in the first half of the sequence and one in the second. The
    target is the sum of the two marked values, y = sum_t m_t v_t, scored by mean squared error.

    Chance level: always predicting the mean (1) gives MSE = Var(v_a + v_b) = 2/12 = 1/6.

    x: [N, seq_len, 2] float, y: [N] float.
    """

    def __init__(self, seq_len: int = 50, train_size: int = 10000, val_size: int = 1000,
                 test_size: int = 1000, batch_size: int = 64, seed: int = 0, limit: int | None = None,
                 generator_device: str = "cpu"):
        super().__init__(seq_len, train_size, val_size, test_size, batch_size, seed, limit, generator_device)
        if seq_len < 2:
            raise ValueError(f"the adding problem needs seq_len >= 2 (one marker in each half), got {seq_len}")
        self.spec = TaskSpec(
            name="adding", input_kind="real", input_size=2, output="regression", num_outputs=1,
            seq_len=seq_len, metric="mse", chance={"mse": 1 / 6, "loss": 1 / 6},
        )

    bytes_per_step = 16  # values, markers and x (two features) as float32 while a split is drawn

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.spec.seq_len
        half = T // 2
        device = generator.device
        values = torch.rand(n, T, generator=generator, device=device)
        first = torch.randint(0, half, (n,), generator=generator, device=device)
        second = torch.randint(half, T, (n,), generator=generator, device=device)
        markers = torch.zeros(n, T, device=device)
        rows = torch.arange(n, device=device)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = torch.stack([values, markers], dim=-1)
        y = values[rows, first] + values[rows, second]
        return x, y


class CopyDataModule(GeneratedDataModule):
    """The copy-memory task (Arjovsky et al. 2016): remember 10 symbols over a delay of T steps.

    Tokens: 0 blank, 1..8 data symbols, 9 the delimiter. A sequence has T + 20 steps:

        input   s_1 .. s_10 | 0 x (T - 1) | 9 | 0 x 10
        target  0 x (T + 10)                  | s_1 .. s_10

    Scored per step by cross-entropy over all T + 20 steps, and by accuracy on the 10 recall
    steps. Chance level: predicting blanks exactly and guessing the symbols uniformly gives
    cross-entropy 10 ln 8 / (T + 20) and recall accuracy 1/8.

    x: [N, T + 20] long, y: [N, T + 20] long (classes 0..8).
    """

    symbols = 8
    remember = 10

    def __init__(self, seq_len: int = 50, train_size: int = 10000, val_size: int = 1000,
                 test_size: int = 1000, batch_size: int = 64, seed: int = 0, limit: int | None = None,
                 generator_device: str = "cpu"):
        super().__init__(seq_len, train_size, val_size, test_size, batch_size, seed, limit, generator_device)
        self.delay = seq_len
        total = seq_len + 2 * self.remember
        chance_ce = self.remember * math.log(self.symbols) / total
        self.spec = TaskSpec(
            name="copy", input_kind="tokens", input_size=self.symbols + 2, output="per_step_classification",
            num_outputs=self.symbols + 1, seq_len=total, metric="acc",
            chance={"acc": 1 / self.symbols, "loss": chance_ce}, metric_last_steps=self.remember,
        )

    bytes_per_step = 16  # x and y as int64

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k, T = self.remember, self.delay
        device = generator.device
        data = torch.randint(1, self.symbols + 1, (n, k), generator=generator, device=device)
        x = torch.zeros(n, T + 2 * k, dtype=torch.long, device=device)
        y = torch.zeros(n, T + 2 * k, dtype=torch.long, device=device)
        x[:, :k] = data
        x[:, T + k - 1] = self.symbols + 1
        y[:, -k:] = data
        return x, y
