"""Bach chorales: piano rolls, next-step tensors with a mask, the split by piece, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from music21 import chord, note, stream

from grubench.data import chorales
from grubench.data.base import TensorBatches
from grubench.data.chorales import ChoralesDataModule, piano_roll
from grubench.models import SequenceModel
from grubench.task import loss_and_metric_inputs

PIECES = 6


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("chorales-cache")


@pytest.fixture(scope="module")
def few(cache):
    datamodule = ChoralesDataModule(max_pieces=PIECES, cache_dir=str(cache), batch_size=2)
    datamodule.setup()
    return datamodule


def test_piano_roll_samples_each_quarter_beat():
    part = stream.Part()
    part.partName = "Soprano"
    part.insert(0.0, note.Note("C4", quarterLength=2.0))      # beats 0, 1
    part.insert(2.0, note.Note("D4", quarterLength=0.5))      # beat 2 (sounds at its onset)
    part.insert(2.5, note.Note("E4", quarterLength=0.5))      # between beats 2 and 3: never sampled
    part.insert(3.0, chord.Chord(["G4", "B4"], quarterLength=1.0))  # beat 3, two keys
    trumpet = stream.Part()
    trumpet.partName = "Trumpet 1"
    trumpet.insert(0.0, note.Note("C6", quarterLength=4.0))   # not a voice: left out
    score = stream.Score([part, trumpet])
    roll = piano_roll(score)
    assert roll.shape == (4, 88)
    on = {t: sorted(int(k) + 21 for k in np.nonzero(roll[t])[0]) for t in range(4)}
    assert on == {0: [60], 1: [60], 2: [62], 3: [67, 71]}


def test_shapes_mask_and_next_step_targets(few):
    assert few.spec.output == "per_step_multilabel" and few.spec.input_size == 88 and few.spec.num_outputs == 88
    sizes = few.split_sizes()
    assert sum(sizes.values()) == PIECES and min(sizes.values()) >= 1
    for split, (x, y, mask) in few.splits.items():
        rolls = few.split_rolls()[split]
        assert x.shape == y.shape and x.shape[:2] == mask.shape and x.shape[2] == 88
        assert mask.sum(1).tolist() == [len(r) - 1 for r in rolls]
        for i, roll in enumerate(rolls):
            L = len(roll) - 1
            assert torch.equal(x[i, :L], torch.from_numpy(roll[:-1]).float())
            assert torch.equal(y[i, :L], torch.from_numpy(roll[1:]).float())
            assert x[i, L:].sum() == 0 and y[i, L:].sum() == 0
    assert few.spec.seq_len == max(len(r) for r in few.rolls) - 1
    assert 0 < few.spec.chance["nll"] < 88 * np.log(2)


def test_split_is_by_piece_fixed_and_independent_of_the_run_seed(few, cache):
    indices = [set(few.pieces[s].tolist()) for s in ("train", "val", "test")]
    assert set().union(*indices) == set(range(PIECES)) and sum(map(len, indices)) == PIECES
    other_seed = ChoralesDataModule(max_pieces=PIECES, cache_dir=str(cache), seed=5)
    other_split = ChoralesDataModule(max_pieces=PIECES, cache_dir=str(cache), split_seed=1)
    assert all(np.array_equal(few.pieces[s], other_seed.pieces[s]) for s in few.pieces)
    assert any(not np.array_equal(few.pieces[s], other_split.pieces[s]) for s in few.pieces)


def test_rolls_are_parsed_once_then_read_from_the_cache(few, cache, monkeypatch):
    files = list(cache.rglob("*.npy"))
    assert len(files) == PIECES

    def no_parsing(score):
        raise AssertionError("cached rolls should have been read")

    monkeypatch.setattr(chorales, "piano_roll", no_parsing)
    again = ChoralesDataModule(max_pieces=PIECES, cache_dir=str(cache))
    assert all(np.array_equal(a, b) for a, b in zip(few.rolls, again.rolls))


def test_describe_counts_pieces_steps_and_notes(few):
    stats = few.describe()
    assert sum(stats[f"{s}/pieces"] for s in ("train", "val", "test")) == PIECES
    assert sum(stats[f"{s}/steps"] for s in ("train", "val", "test")) == sum(len(r) for r in few.rolls)
    assert sum(stats[f"{s}/notes"] for s in ("train", "val", "test")) == sum(int(r.sum()) for r in few.rolls)
    assert stats["train/scored_steps"] == int(few.splits["train"][2].sum())


def test_batches_are_cut_to_their_longest_piece(few):
    x, y, mask = few.splits["train"]
    for bx, by, bmask in TensorBatches((x, y, mask), batch_size=2, shuffle=True, seed=0):
        assert bx.shape[1] == by.shape[1] == bmask.shape[1] == int(bmask.sum(1).max())


def test_padding_does_not_change_the_nll(few):
    torch.manual_seed(0)
    model = SequenceModel(few.spec, recurrent=torch.nn.GRU, name="gru", hidden_size=4)
    x, y, mask = few.splits["train"]
    i = int(mask.sum(1).argmin())  # the shortest piece, so it carries padding
    L = int(mask[i].sum())
    assert L < x.shape[1]
    padded, _ = loss_and_metric_inputs(model, few.spec, (x[i : i + 1], y[i : i + 1], mask[i : i + 1]))
    cut, _ = loss_and_metric_inputs(model, few.spec, (x[i : i + 1, :L], y[i : i + 1, :L]))
    assert torch.allclose(padded, cut)


def test_too_few_pieces_and_bad_fractions_are_refused(cache):
    with pytest.raises(ValueError, match="split empty"):
        ChoralesDataModule(max_pieces=2, cache_dir=str(cache))
    with pytest.raises(ValueError, match="val_fraction"):
        ChoralesDataModule(max_pieces=PIECES, val_fraction=1.5, cache_dir=str(cache))
