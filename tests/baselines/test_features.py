"""Lagged spike counts and the samples a baseline is trained and scored on."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.baselines.features import lagged_counts, split_samples
from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session

from .synthetic import make_session


def _tiny_session(seed=0, num_units=4, num_spikes=300, duration=5.0):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, duration, num_spikes))
    units = rng.integers(0, num_units, num_spikes)
    ts = np.arange(0.0, duration, 0.01)
    return Session(
        id="tiny", spike_times=times, spike_units=units, unit_ids=[f"u{i}" for i in range(num_units)],
        series={"y": Series(ts, np.sin(ts))}, targets=["y"],
    )


def _slow_counts(session, timestamps, bin, lags, future):
    """One timestamp, one bin, one unit at a time, straight from the definition."""
    rows = []
    for t in timestamps:
        row = []
        bins = [(t - k * bin, t - (k - 1) * bin) for k in range(lags, 0, -1)]
        bins += [(t + j * bin, t + (j + 1) * bin) for j in range(future)]
        for a, b in bins:
            for u in range(session.num_units):
                sel = (session.spike_units == u) & (session.spike_times >= a) & (session.spike_times < b)
                row.append(sel.sum())
        rows.append(row)
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("lags,future", [(3, 0), (3, 2), (0, 2), (1, 0)])
def test_lagged_counts_match_explicit_loop(lags, future):
    session = _tiny_session()
    ts = np.random.default_rng(1).uniform(-0.2, 5.2, 60)  # some bins reach past the data
    fast = lagged_counts(session, ts, bin=0.07, lags=lags, future=future)
    assert fast.shape == (60, (lags + future) * 4)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, _slow_counts(session, ts, 0.07, lags, future))
    assert fast.sum() > 0


def test_layout_is_bin_major_oldest_first():
    # One spike of unit 2 at 0.95 s: for t = 1.0, bin 0.1, lags 3 it is in the newest past bin.
    session = Session(id="one", spike_times=[0.95], spike_units=[2], unit_ids=["a", "b", "c"])
    X = lagged_counts(session, [1.0], bin=0.1, lags=3, future=1)
    seq = X.reshape(1, 4, 3)
    expected = np.zeros((4, 3), dtype=np.float32)
    expected[2, 2] = 1  # bins: [0.7,0.8) [0.8,0.9) [0.9,1.0) [1.0,1.1)
    np.testing.assert_array_equal(seq[0], expected)
    # Causal: a spike exactly at t belongs to the first future bin, not to the past.
    at_t = Session(id="at", spike_times=[1.0], spike_units=[0], unit_ids=["a"])
    np.testing.assert_array_equal(lagged_counts(at_t, [1.0], bin=0.1, lags=2, future=1), [[0, 0, 1]])


def test_lagged_counts_empty_and_bad_arguments():
    session = _tiny_session()
    assert lagged_counts(session, [], bin=0.02, lags=10).shape == (0, 40)
    with pytest.raises(ValueError, match="bin must be positive"):
        lagged_counts(session, [1.0], bin=0.0, lags=10)
    with pytest.raises(ValueError, match="at least one bin"):
        lagged_counts(session, [1.0], bin=0.02, lags=0, future=0)


def test_split_samples_are_split_and_eval_and_finite():
    session = make_session(nan_every=7, num_trials=10)
    series = session.series["hand_vel"]
    for split in ("train", "valid", "test"):
        for use_eval in (False, True):
            ts, ys = split_samples(session, "hand_vel", split, eval_mask=use_eval)
            # Independent computation: loop over the intervals and the samples.
            expected = []
            for i, t in enumerate(series.timestamps):
                in_split = any(a <= t < b for a, b in session.split(split))
                in_eval = any(a <= t < b for a, b in session.intervals["eval"])
                if in_split and (in_eval or not use_eval) and np.isfinite(series.values[i]).all():
                    expected.append(i)
            assert len(expected) > 0
            np.testing.assert_array_equal(ts, series.timestamps[expected])
            np.testing.assert_array_equal(ys, series.values[expected])
    # The train split holds no eval-only restriction; valid with eval is a strict subset.
    assert len(split_samples(session, "hand_vel", "valid", eval_mask=True)[0]) < len(
        split_samples(session, "hand_vel", "valid", eval_mask=False)[0])


def test_split_samples_without_eval_mask_means_everywhere():
    session = make_session(num_trials=10)
    del session.intervals["eval"]
    a = split_samples(session, "hand_vel", "test", eval_mask=True)[0]
    b = split_samples(session, "hand_vel", "test", eval_mask=False)[0]
    np.testing.assert_array_equal(a, b)
    assert len(a) == 2 * 2 * 100  # 2 test trials of 2 s at 100 Hz
    session.intervals["test"] = Intervals.empty()
    assert len(split_samples(session, "hand_vel", "test", eval_mask=True)[0]) == 0
