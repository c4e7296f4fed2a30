"""clean_session: what is refused, what is repaired, and the one-line warnings."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.data.validate import clean_session, finite_in_order
from popdecode.errors import UserError

from .helpers import make_session


def test_clean_session_repairs_and_counts():
    s = make_session("v", units=4, duration=10.0)
    n = s.num_spikes
    s.spike_units = np.where(s.spike_units == 3, 0, s.spike_units)  # unit u3 silent
    times, units = s.spike_times.copy(), s.spike_units.copy()
    times[[10, 11]] = times[[11, 10]]  # one swapped pair: two spikes out of order
    s.spike_times = np.concatenate([[2.0], times, [99.0, np.nan]])  # before / after the domain, NaN
    s.spike_units = np.concatenate([[1], units, [1, 1]])
    s.series["hand_vel"].values[[3, 7, 7], [0, 0, 1]] = np.nan
    out, notes = clean_session(s)
    assert notes == [
        "session v: dropped 1 spikes with a non-finite time",
        "session v: 2 spikes were not in time order; sorted them",
        "session v: dropped 2 spikes outside the observation intervals",
        "session v: 1 of 4 units have no spikes (kept)",
        "session v: series 'hand_vel' has 2 samples with NaN (kept; masked out of training and evaluation)",
    ]
    assert out.num_spikes == n and np.all(np.diff(out.spike_times) >= 0)
    assert np.isnan(out.series["hand_vel"].values).sum() == 3
    again, notes2 = clean_session(out)
    assert notes2 == ["session v: 1 of 4 units have no spikes (kept)",
                      "session v: series 'hand_vel' has 2 samples with NaN (kept; masked out of training and evaluation)"]
    np.testing.assert_array_equal(again.spike_times, out.spike_times)


def test_duplicate_unit_ids_refused():
    s = make_session("d", units=4)
    s.unit_ids = ["a", "b", "a", "b"]
    with pytest.raises(UserError) as err:
        clean_session(s)
    assert str(err.value) == ("session d: duplicate unit ids 'a', 'b' (2 ids appear more than once); "
                              "unit ids must be unique within a session: fix the units table of the source file")


def test_bad_unit_index_and_missing_target_refused():
    s = make_session("b", units=4)
    s.spike_units[0] = 9
    with pytest.raises(UserError, match=r"^session b: spike unit indices run from 0 to 9 but there are 4 units"):
        clean_session(s)
    s = make_session("t")
    s.targets = ["nope"]
    with pytest.raises(UserError) as err:
        clean_session(s)
    assert str(err.value) == "session t: target series nope not found; the session has: hand_vel, force"


def test_behaviour_samples_without_a_time_are_dropped():
    s = make_session("n")
    s.series["force"].timestamps[[0, 5]] = np.nan
    out, notes = clean_session(s)
    assert notes == ["session n: series 'force': dropped 2 samples with a non-finite timestamp"]
    assert len(out.series["force"].timestamps) == len(s.series["force"].timestamps) - 2


def test_finite_in_order_matches_filter_then_stable_sort():
    rng = np.random.default_rng(3)
    times = rng.integers(0, 20, size=200).astype(float)  # many ties: stability matters
    times[rng.choice(200, size=15, replace=False)] = np.nan
    times[7] = np.inf
    keep, dropped, moved = finite_in_order(times)
    finite = np.flatnonzero(np.isfinite(times))
    expected = finite[np.argsort(times[finite], kind="stable")]
    np.testing.assert_array_equal(keep, expected)
    assert dropped == 16
    assert moved == int(np.count_nonzero(np.argsort(times[finite], kind="stable") != np.arange(len(finite))))
    assert finite_in_order(np.array([0.0, 1.0, 1.0, 2.0])) == (None, 0, 0)
