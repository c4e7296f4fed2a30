"""plan_replay: the streamed segments hold exactly the causal windows evaluate --causal scores."""

from __future__ import annotations

import numpy as np

from popdecode.serve.replay import bin_plan, plan_replay
from popdecode.tokenize.causal import causal_windows
from train.easy_data import easy_session


def test_every_scored_sample_has_its_whole_causal_window_in_one_segment():
    session = easy_session("r", seed=3, seconds=60.0)
    plan = plan_replay(session, split="test", readout="hand_vel", lead_in=1.5, gap=0.5)
    flagged = plan.sample_values[:, -1] > 0
    windows = causal_windows([session], [session.split("test")], {"r": ["hand_vel"]})
    eval_set = session.intervals["eval"]
    scored = [w for w in windows if eval_set.contains(w[2]["hand_vel"])[0]]
    assert flagged.sum() == len(scored)
    # map each flagged sample back to session time through its segment, and compare spikes
    for k in np.flatnonzero(flagged)[::25]:
        st = plan.sample_times[k]
        seg = [s for s in plan.segments if s[2] <= st < s[2] + (s[1] - s[0])][0]
        t = st - seg[2] + seg[0]
        assert seg[0] <= t - 1.0  # the lead-in covers the window
        i0, i1 = np.searchsorted(plan.spike_times, [st - 1.0, st])
        j0, j1 = np.searchsorted(session.spike_times, [t - 1.0, t])
        np.testing.assert_allclose(plan.spike_times[i0:i1] - st, session.spike_times[j0:j1] - t, atol=1e-9)
        np.testing.assert_array_equal(plan.spike_units[i0:i1], session.spike_units[j0:j1])
        np.testing.assert_allclose(plan.sample_values[k, :2], session.series["hand_vel"].values[
            np.searchsorted(session.series["hand_vel"].timestamps, t - 1e-9)], rtol=1e-6)
    # segments are laid end to end with the gap, in order
    starts = [s[2] for s in plan.segments]
    assert np.all(np.diff(starts) > 0)


def test_binned_plan_counts_every_spike_once():
    session = easy_session("r", seed=3, seconds=30.0)
    plan = plan_replay(session, split="test", readout="hand_vel", lead_in=1.5, gap=0.5)
    ends, counts = bin_plan(plan, units=len(session.unit_ids), width=0.02)
    assert counts.sum() == len(plan.spike_times)
    np.testing.assert_array_equal(counts.sum(0), np.bincount(plan.spike_units, minlength=len(session.unit_ids)))
    assert np.all(np.diff(ends) > 0)
