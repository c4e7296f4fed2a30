"""Training and evaluation windows: placement, counts, shuffling, sharding, resuming."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from popdecode.data.intervals import Intervals
from popdecode.tokenize.sampler import EvalWindowSampler, TrainWindowSampler

TRAIN = [
    Intervals([0.0, 10.0, 20.0], [7.3, 10.6, 21.0]),  # 7 windows, dropped, exactly 1
    Intervals([100.0], [112.5]),  # 12 windows
    Intervals.empty(),  # a session with no train data
]


def test_windows_lie_inside_train_intervals_and_count_is_floor():
    smp = TrainWindowSampler(intervals=TRAIN, seed=3)
    assert len(smp) == 7 + 1 + 12
    for epoch in range(5):
        smp.set_epoch(epoch)
        wins = list(smp)
        assert len(wins) == len(smp)
        per_interval = Counter()
        for s, t0 in wins:
            hits = [k for k, (a, b) in enumerate(TRAIN[s]) if a - 1e-9 <= t0 and t0 + 1.0 <= b + 1e-9]
            assert len(hits) == 1, (s, t0)
            per_interval[(s, hits[0])] += 1
        assert per_interval == Counter({(0, 0): 7, (0, 2): 1, (1, 0): 12})


def test_tiling_covers_interval_and_moves_each_epoch():
    smp = TrainWindowSampler(intervals=[Intervals([0.0], [12.5])], seed=0)
    grid = np.linspace(0.0, 12.5, 2501)[:-1]
    seen_ever = np.zeros(len(grid), bool)
    starts = []
    for epoch in range(30):
        t0 = np.array(sorted(t for _, t in smp.epoch_windows(epoch)))
        covered = ((grid[:, None] >= t0[None]) & (grid[:, None] < t0[None] + 1.0)).any(axis=1)
        assert covered.mean() >= 11.5 / 12.5 - 1e-3  # all but at most one window-length of leftover
        seen_ever |= covered
        starts.append(tuple(np.round(t0, 9)))
    assert seen_ever.all()  # the moving offset reaches every moment
    assert len(set(starts)) == 30  # a different tiling every epoch


def test_deterministic_per_seed_and_reshuffled_per_epoch():
    a = TrainWindowSampler(intervals=TRAIN, seed=1)
    b = TrainWindowSampler(intervals=TRAIN, seed=1)
    c = TrainWindowSampler(intervals=TRAIN, seed=2)
    assert a.epoch_windows(4) == b.epoch_windows(4)
    assert a.epoch_windows(4) != c.epoch_windows(4)
    assert a.epoch_windows(0) != a.epoch_windows(1)
    # the order itself is shuffled, not just the offsets
    order0 = [s for s, _ in a.epoch_windows(0)]
    order1 = [s for s, _ in a.epoch_windows(1)]
    assert order0 != order1


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_rank_shards_are_disjoint_and_complete(world_size):
    full = TrainWindowSampler(intervals=TRAIN, seed=5).epoch_windows(2)
    shards = []
    for rank in range(world_size):
        smp = TrainWindowSampler(intervals=TRAIN, seed=5, rank=rank, world_size=world_size)
        smp.set_epoch(2)
        shards.append(list(smp))
        assert len(shards[-1]) == len(smp)
    flat = [w for sh in shards for w in sh]
    assert sorted(flat) == sorted(full) and len(set(flat)) == len(flat)
    padded = [
        list(TrainWindowSampler(intervals=TRAIN, seed=5, rank=r, world_size=world_size, pad=True).rank_windows(2))
        for r in range(world_size)
    ]
    assert len({len(p) for p in padded}) == 1  # equal steps on every rank
    assert set(w for p in padded for w in p) == set(full)


def test_resume_mid_epoch():
    smp = TrainWindowSampler(intervals=TRAIN, seed=9, rank=1, world_size=2)
    smp.set_epoch(3)
    whole = list(smp)
    state = {"epoch": 3, "position": 4, "seed": 9}
    fresh = TrainWindowSampler(intervals=TRAIN, seed=9, rank=1, world_size=2)
    fresh.load_state_dict(state)
    assert list(fresh) == whole[4:]
    assert fresh.state_dict() == state
    with pytest.raises(ValueError, match="seed 9"):
        TrainWindowSampler(intervals=TRAIN, seed=1).load_state_dict(state)


def test_eval_windows_step_and_end_alignment():
    iv = [Intervals([0.0, 10.0], [3.2, 10.4]), Intervals([5.0], [7.0])]
    smp = EvalWindowSampler(intervals=iv, window_length=1.0, step=0.5)
    wins = list(smp)
    assert wins == [
        (0, 0.0), (0, 0.5), (0, 1.0), (0, 1.5), (0, 2.0), (0, pytest.approx(2.2)),  # last ends at 3.2
        (0, 10.0),  # shorter than a window: one window from its start
        (1, 5.0), (1, 5.5), (1, 6.0),  # 7.0 - 1.0 = 6.0 already aligned: no duplicate
    ]
    assert len(smp) == 10
    shards = [list(EvalWindowSampler(intervals=iv, rank=r, world_size=3)) for r in range(3)]
    assert sorted(w for sh in shards for w in sh) == sorted(wins)


def test_window_at_matches_indexed_windows():
    for ws, pad in [(1, False), (3, False), (3, True), (7, True)]:
        for rank in range(ws):
            smp = TrainWindowSampler(intervals=TRAIN, seed=2, rank=rank, world_size=ws, pad=pad)
            assert [smp.window_at(i, 1) for i in range(len(smp))] == smp.indexed_windows(1)
    with pytest.raises(IndexError):
        smp.window_at(len(smp))


# -- sharing an epoch among sessions ---------------------------------------------------------

UNEVEN = [Intervals([0.0], [40.5]), Intervals([100.0, 110.0], [103.2, 114.0]), Intervals([200.0], [201.5]),
          Intervals.empty()]  # 40, 3 + 4, 1 and 0 windows per tiling


@pytest.mark.parametrize("sampling, expected", [
    ("session", [1 / 3, 1 / 3, 1 / 3, 0.0]),
    ("sqrt", np.sqrt([40, 7, 1, 0]) / np.sqrt([40, 7, 1]).sum()),
    ([1.0, 2.0, 5.0, 9.0], [1 / 8, 2 / 8, 5 / 8, 0.0]),  # a session without windows gets none
    ("duration", [40 / 48, 7 / 48, 1 / 48, 0.0]),
])
def test_windows_drawn_per_session_follow_the_weights(sampling, expected):
    smp = TrainWindowSampler(intervals=UNEVEN, seed=4, sampling=sampling)
    epochs, total = 1500, smp.total_windows
    assert total == 48 and len(smp) == 48  # an epoch keeps its length in every mode
    counts = np.zeros(4)
    for epoch in range(epochs):
        wins = smp.epoch_windows(epoch)
        assert len(wins) == total
        counts += np.bincount([s for s, _ in wins], minlength=4)
    n = epochs * total
    p = np.asarray(expected, dtype=float)
    # Binomial sd of each count as if every window were drawn independently: a bound on the
    # spread of the stratified draw. Ignoring the weights (duration's shares) lies > 25 sd off.
    sd = np.sqrt(n * p * (1 - p)) + 1e-9
    assert np.all(np.abs(counts - n * p) <= 4 * sd), (counts / n, p)
    if sampling != "duration":
        duration = np.array([40, 7, 1, 0]) / 48
        assert np.any(np.abs(counts - n * duration) > 25 * sd)


def test_short_sessions_repeat_at_fresh_offsets_long_ones_are_subsampled():
    smp = TrainWindowSampler(intervals=UNEVEN, seed=1, sampling="session")
    for epoch in range(20):
        wins = smp.epoch_windows(epoch)
        for s, t0 in wins:  # every window still lies inside its session's train intervals
            assert any(a - 1e-9 <= t0 and t0 + 1.0 <= b + 1e-9 for a, b in UNEVEN[s])
        long = [t for s, t in wins if s == 0]
        assert len(long) in (16, 17) and len(set(long)) == len(long)  # a subset of one tiling
        short = [t for s, t in wins if s == 2]  # 1.5 s: one window per tiling, ~16 tilings
        assert len(short) in (15, 16, 17)
        # Each tiling has its own offset (its window starts at 200, 200.5 or in between).
        assert len(set(np.round(short, 12))) > 2


def test_one_session_or_duration_weights_give_the_duration_draw_bit_for_bit():
    one = [Intervals([0.0, 20.0], [12.5, 27.0])]
    for sampling in ("session", "sqrt", [3.0]):
        assert (TrainWindowSampler(intervals=one, seed=2, sampling=sampling).epoch_windows(5)
                == TrainWindowSampler(intervals=one, seed=2).epoch_windows(5))
    with pytest.raises(ValueError, match="sampling must be one of duration, session, sqrt or a list of weights"):
        TrainWindowSampler(intervals=one, sampling="uniform")
    with pytest.raises(ValueError, match="2 sampling weights for 1 sessions"):
        TrainWindowSampler(intervals=one, sampling=[1.0, 2.0])


@pytest.mark.parametrize("sampling", ["session", "sqrt", [1.0, 4.0, 2.0, 1.0]])
@pytest.mark.parametrize("world_size, pad", [(1, False), (3, False), (3, True)])
def test_every_mode_resumes_mid_epoch_and_shards_disjoint_and_complete(sampling, world_size, pad):
    full = TrainWindowSampler(intervals=UNEVEN, seed=7, sampling=sampling).epoch_windows(3)
    shards = []
    for rank in range(world_size):
        smp = TrainWindowSampler(intervals=UNEVEN, seed=7, rank=rank, world_size=world_size, pad=pad,
                                 sampling=sampling)
        smp.set_epoch(3)
        whole = list(smp)
        fresh = TrainWindowSampler(intervals=UNEVEN, seed=7, rank=rank, world_size=world_size, pad=pad,
                                   sampling=sampling)
        fresh.load_state_dict({"epoch": 3, "position": 5, "seed": 7})
        assert list(fresh) == whole[5:]
        assert [smp.window_at(i, 3) for i in range(len(smp))] == smp.indexed_windows(3)
        shards.append(whole)
    flat = [w for sh in shards for w in sh]
    if pad:
        assert len({len(sh) for sh in shards}) == 1 and set(flat) == set(full)
    else:
        assert sorted(flat) == sorted(full)
