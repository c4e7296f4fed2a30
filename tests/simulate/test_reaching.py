"""Reach trajectories: velocity is the derivative of position; trial timelines are consistent."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.simulate.reaching import ReachingConfig, simulate_reaching, task_signals


@pytest.mark.parametrize("task", ["center-out", "random-target"])
def test_velocity_is_the_derivative_of_position(task):
    r = simulate_reaching(np.random.default_rng(3), task=task, num_trials=20, config=ReachingConfig())
    # Central differences of the position against the analytic velocity (plus jitter).
    central = (r.position[2:] - r.position[:-2]) / 0.02
    err = np.abs(central - r.velocity[1:-1])
    assert np.percentile(err, 99) < 0.05 * np.abs(r.velocity).max()
    t = r.trials
    assert np.all(t["start"] < t["target_on"] + 1e-12) and np.all(t["go_cue"] < t["movement_onset"])
    assert np.all(t["movement_onset"] < t["reach_end"]) and np.all(t["reach_end"] <= t["stop"])
    assert np.allclose(t["start"][1:], t["stop"][:-1])  # trials follow one another
    assert r.end == t["stop"][-1] and r.timestamps[-1] < r.end


def test_random_targets_stay_in_the_workspace_and_are_reached():
    cfg = ReachingConfig()
    r = simulate_reaching(np.random.default_rng(4), task="random-target", num_trials=30, config=cfg)
    tx, ty = r.trials["target_x"], r.trials["target_y"]
    assert np.abs(np.r_[tx, ty]).max() <= cfg.workspace_half_width
    steps = np.hypot(np.diff(np.r_[0, tx]), np.diff(np.r_[0, ty]))
    assert steps.min() >= cfg.min_reach_distance
    i = np.searchsorted(r.timestamps, r.trials["reach_end"][:-1])
    assert np.abs(r.position[i] - np.stack([tx, ty], 1)[:-1]).max() < 0.5


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task 'maze'"):
        simulate_reaching(np.random.default_rng(0), task="maze", num_trials=2, config=ReachingConfig())


def test_task_signals_prepare_the_coming_reach_and_mark_its_onset():
    r = simulate_reaching(np.random.default_rng(5), task="center-out", num_trials=6, config=ReachingConfig())
    prep, onset = task_signals(r, ramp=0.2, decay=0.1)
    t, tr = r.timestamps, r.trials
    for k in range(6):
        # Silent before the target, fully on (pointing at the target) just before moving.
        before = (t < tr["target_on"][k]) & (t > tr["start"][k])
        assert np.all(prep[before] == 0) if k == 0 else np.all(np.abs(prep[before]) < 1e-3)
        i = np.searchsorted(t, tr["movement_onset"][k]) - 1
        if tr["movement_onset"][k] - tr["target_on"][k] > 0.2:
            angle = tr["target_angle"][k]
            assert np.allclose(prep[i], [np.cos(angle), np.sin(angle)])
        # The onset bump peaks 50 ms after movement onset.
        near = np.abs(t - tr["movement_onset"][k]) < 0.3
        assert abs(t[near][np.argmax(onset[near])] - (tr["movement_onset"][k] + 0.05)) <= 0.011
