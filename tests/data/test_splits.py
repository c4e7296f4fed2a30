"""Splits: 70/10/20 of valid trials or of ~60 s blocks, 1 s margins, kept when given."""

from __future__ import annotations

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.splits import assign_splits, time_blocks

from .helpers import make_session


def check_margins(s, margin=1.0):
    """train = domain minus (valid | test) widened by the margin, computed pointwise."""
    grid = np.arange(s.domain.start[0], s.domain.end[-1], 0.013)
    held = s.split("valid").union(s.split("test"))
    near = np.zeros(len(grid), bool)
    for a, b in held:
        near |= (grid >= a - margin) & (grid < b + margin)
    np.testing.assert_array_equal(s.split("train").contains(grid), s.domain.contains(grid) & ~near)


def test_trials_dealt_70_10_20_with_margins():
    s = assign_splits(make_session(n_trials=50, duration=100.0), seed=0)
    labels = s.trials["split"]
    assert [(labels == k).sum() for k in ("train", "valid", "test")] == [35, 5, 10]
    for name in ("valid", "test"):  # the held-out intervals are exactly those trials
        pick = labels == name
        expect = Intervals.from_pairs(s.trials["start"][pick], s.trials["stop"][pick])
        np.testing.assert_allclose(s.split(name).start, expect.start)
        np.testing.assert_allclose(s.split(name).end, expect.end)
    check_margins(s)


def test_seed_decides_and_repeats():
    base = make_session(n_trials=40, duration=80.0)
    a, b, c = (assign_splits(base, seed=k) for k in (0, 0, 1))
    assert list(a.trials["split"]) == list(b.trials["split"])
    assert list(a.trials["split"]) != list(c.trials["split"])
    assert "split" not in base.trials  # the input is not modified


def test_only_valid_trials_are_dealt():
    s = make_session(n_trials=20, duration=40.0)
    s.trials["is_valid"] = s.trials["result"] == "R"
    out = assign_splits(s, seed=0)
    assert set(out.trials["split"][~s.trials["is_valid"]]) == {""}
    assert [(out.trials["split"] == k).sum() for k in ("train", "valid", "test")] == [7, 1, 2]


def test_split_column_is_kept():
    s = make_session(n_trials=10, duration=20.0)
    s.trials["split"] = np.array(["train"] * 6 + ["valid"] * 2 + ["test"] * 2)
    out = assign_splits(s, seed=5)
    assert list(out.trials["split"]) == list(s.trials["split"])
    np.testing.assert_allclose(out.split("test").start, [s.trials["start"][8]])
    np.testing.assert_allclose(out.split("test").end, [s.trials["stop"][9]])
    check_margins(out)


def test_given_split_intervals_are_kept():
    s = make_session(n_trials=10, duration=20.0)
    s.intervals.update(train=Intervals(np.array([5.0]), np.array([15.0])),
                       valid=Intervals(np.array([16.0]), np.array([18.0])),
                       test=Intervals(np.array([19.0]), np.array([25.0])))
    out = assign_splits(s, seed=0)
    assert out is s


def test_time_blocks_without_trials():
    s = assign_splits(make_session(duration=1200.0, units=2, rate=1.0), seed=0)
    blocks = time_blocks(s.domain)
    assert len(blocks) == 20 and np.allclose(blocks.end - blocks.start, 60.0)
    assert np.isclose(s.split("valid").duration, 120.0) and np.isclose(s.split("test").duration, 240.0)
    check_margins(s)
    short = time_blocks(Intervals(np.array([0.0]), np.array([100.0])))
    assert len(short) == 10  # short sessions still get at least ten blocks
