"""Bach chorales from music21's corpus as piano rolls: polyphonic next-step prediction.

The closest offline stand-in for the JSB Chorales set (Boulanger-Lewandowski et al. 2012) that
Chung et al. 2014 used: the same pieces' source material, rolled the same way (quarter-note
steps, the 88 piano keys), but encoded independently (see docs/datasets.md for the
differences). Parsing MusicXML is slow, so each piece's roll is cached on disk once.

A roll is r [L, 88] in {0, 1}: r[t, k] = 1 when MIDI pitch 21 + k sounds at quarter-note beat t
(a note sounds at beat t when onset <= t < onset + duration; notes that start and end between
two beats do not show). The model reads the roll up to step t and predicts step t + 1:

    x = r[:-1], y = r[1:]         [L - 1, 88] each, padded to the longest piece with a mask

and is scored by the Bernoulli negative log-likelihood summed over the 88 keys, averaged over
the real time steps (nats per step), the measure of Chung et al. 2014.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from grubench.data.base import SequenceDataModule, cache_root
from grubench.spec import TaskSpec, require_positive

LOWEST, KEYS = 21, 88  # piano range: MIDI 21 (A0) .. 108 (C8)
VOICES = ("soprano", "alto", "tenor", "bass")
CACHE_VERSION = 1  # bump when the rolling below changes


def chorale_names() -> list[str]:
    """The chorales of music21's corpus in Riemenschneider order, each once (the corpus lists
    one piece twice)."""
    from music21.corpus import chorales

    return list(dict.fromkeys(chorales.Iterator(returnType="filename")))


def piano_roll(score) -> np.ndarray:
    """A parsed music21 score -> roll [L, 88] uint8 at quarter-note steps, L = ceil(duration).

    Only the four voices are rolled (parts named Soprano/Alto/Tenor/Bass...); a score with no
    part so named is rolled whole. Instrumental parts (trumpets, timpani, obbligato strings)
    that some chorales carry are left out, as in the four-voice JSB set.
    """
    parts = [p for p in score.parts if (p.partName or "").lower().split(" ")[0] in VOICES] or list(score.parts)
    length = math.ceil(float(score.highestTime) - 1e-9)
    roll = np.zeros((length, KEYS), dtype=np.uint8)
    for part in parts:
        for element in part.flatten().notes:
            start, end = float(element.offset), float(element.offset + element.quarterLength)
            first, stop = math.ceil(start - 1e-9), math.ceil(end - 1e-9)  # beats t with start <= t < end
            for pitch in element.pitches:
                if LOWEST <= pitch.midi < LOWEST + KEYS:
                    roll[first:stop, pitch.midi - LOWEST] = 1
    return roll


def load_rolls(names: list[str], cache_dir: Path) -> list[np.ndarray]:
    """Each named chorale's roll, read from `cache_dir` or parsed and written there."""
    import music21
    from music21 import corpus

    folder = cache_dir / f"v{CACHE_VERSION}-music21-{music21.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    rolls = []
    for name in names:
        path = folder / (name.replace("/", "_") + ".npy")
        if path.exists():
            rolls.append(np.load(path))
            continue
        roll = piano_roll(corpus.parse(name))
        partial = path.with_name(f"{path.stem}.{random.getrandbits(32):08x}.tmp.npy")
        np.save(partial, roll)
        partial.replace(path)  # atomic: a parallel job never reads half a file
        rolls.append(roll)
    return rolls


def split_pieces(n: int, val_fraction: float, test_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    """Piece indices per split: a permutation drawn from `split_seed`, cut into test, val, train."""
    order = np.random.default_rng(split_seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return {"train": np.sort(order[n_test + n_val :]), "val": np.sort(order[n_test : n_test + n_val]),
            "test": np.sort(order[:n_test])}


def next_step_tensors(rolls: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rolls -> x [N, T, 88], y [N, T, 88] float, mask [N, T] bool, T = longest L - 1."""
    longest = max(len(r) - 1 for r in rolls)
    x = torch.zeros(len(rolls), longest, KEYS)
    y = torch.zeros(len(rolls), longest, KEYS)
    mask = torch.zeros(len(rolls), longest, dtype=torch.bool)
    for i, roll in enumerate(rolls):
        r = torch.from_numpy(roll.astype(np.float32))
        x[i, : len(r) - 1], y[i, : len(r) - 1], mask[i, : len(r) - 1] = r[:-1], r[1:], True
    return x, y, mask


def marginal_nll(train: list[np.ndarray], test: list[np.ndarray]) -> float:
    """NLL per step on `test` of the model that ignores the past: every key on with its
    frequency in the training targets (add-one smoothed), independently."""
    targets = np.concatenate([r[1:] for r in train])
    p = (targets.sum(0) + 1.0) / (len(targets) + 2.0)
    scored = np.concatenate([r[1:] for r in test])
    nll = -(scored * np.log(p) + (1 - scored) * np.log1p(-p)).sum(1)
    return float(nll.mean())


class ChoralesDataModule(SequenceDataModule):
    """Next-step prediction of Bach chorale piano rolls (per-step multi-label, 88 keys).

    The pieces are split once, by piece, from `split_seed` (not the run's seed), so every model
    and seed is tested on the same pieces; JSB's proportions (229 / 76 / 77 of 382) are about
    60 / 20 / 20 percent. Chance level: the NLL on the test pieces of independent keys with
    their training frequencies (`marginal_nll`).

    x, y: [N, T, 88] float (y = x one step later), mask: [N, T] bool, T = longest piece - 1.

    Args:
        max_pieces: roll only the first N chorales of the corpus (quick runs and tests);
            None: all 350.
        val_fraction, test_fraction: shares of the pieces held out.
        split_seed: seed of the split.
        cache_dir: where the rolls are cached; None: `cache_root()/chorales`.
    """

    def __init__(self, max_pieces: int | None = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 split_seed: int = 0, cache_dir: str | None = None, batch_size: int = 16, seed: int = 0,
                 limit: int | None = None):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        if max_pieces is not None:
            require_positive(max_pieces=max_pieces)
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < fraction < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {fraction!r}")
        names = chorale_names()[:max_pieces]
        pieces = split_pieces(len(names), val_fraction, test_fraction, split_seed)
        if any(len(index) == 0 for index in pieces.values()):
            raise ValueError(f"{len(names)} pieces leave a split empty: raise max_pieces or change the fractions")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else cache_root() / "chorales"
        self.names = names
        self.pieces = pieces
        self.rolls = load_rolls(names, self.cache_dir)
        split_rolls = {split: [self.rolls[i] for i in index] for split, index in pieces.items()}
        chance = marginal_nll(split_rolls["train"], split_rolls["test"])
        self.spec = TaskSpec(
            name="chorales", input_kind="real", input_size=KEYS, output="per_step_multilabel", num_outputs=KEYS,
            seq_len=max(len(r) for r in self.rolls) - 1, metric="nll", chance={"nll": chance, "loss": chance},
        )

    def split_rolls(self) -> dict[str, list[np.ndarray]]:
        """The rolls of each split, cut by `limit` as the tensors are."""
        return {split: [self.rolls[i] for i in index][: self.limit] for split, index in self.pieces.items()}

    def make_splits(self):
        return {split: next_step_tensors(rolls) for split, rolls in self.split_rolls().items()}

    def describe(self) -> dict[str, int | float]:
        """Per split: pieces, steps (quarter-note beats), notes (sounding keys summed over the
        beats), scored steps (steps - pieces: every beat but the first is predicted)."""
        stats = {}
        for split, rolls in self.split_rolls().items():
            steps = sum(len(r) for r in rolls)
            stats.update({f"{split}/pieces": len(rolls), f"{split}/steps": steps,
                          f"{split}/notes": int(sum(r.sum() for r in rolls)),
                          f"{split}/scored_steps": steps - len(rolls)})
        return stats
