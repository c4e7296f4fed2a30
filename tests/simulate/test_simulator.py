"""The simulated dataset: determinism, statistics, hidden unit identities, task structure."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.data.session import SPLITS
from popdecode.simulate.neurons import TuningConfig
from popdecode.simulate.simulator import SimulationConfig, simulate_dataset

from .conftest import small_config


def _same_session(a, b) -> bool:
    return (
        a.id == b.id
        and a.unit_ids == b.unit_ids
        and np.array_equal(a.spike_times, b.spike_times)
        and np.array_equal(a.spike_units, b.spike_units)
        and np.array_equal(a.series["hand_vel"].values, b.series["hand_vel"].values)
        and all(np.array_equal(a.trials[k], b.trials[k]) for k in a.trials)
    )


def test_same_seed_same_data_and_sessions_independent_of_dataset_size(small_dataset):
    sessions, truth = small_dataset
    again, truth2 = simulate_dataset(small_config(), show_progress=False)
    assert all(_same_session(a, b) for a, b in zip(sessions, again))
    for sid in truth.unit_pool_index:
        assert np.array_equal(truth.rates[sid], truth2.rates[sid])
    # Asking for fewer sessions does not change the ones that remain.
    fewer, _ = simulate_dataset(small_config(num_animals=1, sessions_per_animal=1), show_progress=False)
    assert _same_session(fewer[0], sessions[0])
    other, _ = simulate_dataset(small_config(seed=8, num_animals=1, sessions_per_animal=1), show_progress=False)
    assert not np.array_equal(other[0].spike_times[:100], sessions[0].spike_times[:100])


def test_session_layout(small_dataset):
    sessions, _ = small_dataset
    assert [s.id for s in sessions] == ["sim-a0-s0", "sim-a0-s1", "sim-a1-s0", "sim-a1-s1"]
    for s in sessions:
        assert 30 <= s.num_units <= 250
        assert s.unit_ids == [f"unit-{i:03d}" for i in range(s.num_units)]
        assert s.targets == ["hand_vel"]
        vel, pos = s.series["hand_vel"], s.series["hand_pos"]
        assert (vel.columns, vel.unit, pos.columns, pos.unit) == (["vx", "vy"], "cm/s", ["x", "y"], "cm")
        assert np.allclose(np.diff(vel.timestamps), 0.01)
        assert np.all(np.diff(s.spike_times) >= 0) and s.spike_times.dtype == np.float64
        assert s.spike_times[0] >= 0 and s.spike_times[-1] < s.end
        assert s.metadata == {
            "subject": s.id[:6], "species": "simulated macaque",
            "task": "center-out" if s.id.endswith("s0") else "random-target",
            "source": "popdecode simulate seed=7",
        }
        assert all(len(s.split(name)) for name in SPLITS)
        assert sorted(np.unique(s.trials["split"])) == ["test", "train", "valid"]
    # Sessions last minutes at the default size: 120 center-out trials are 4-8 minutes.
    assert 2 * 60 < sessions[0].duration * 120 / 30 < 8 * 60


def test_eval_mask_is_the_reach_period(small_dataset):
    for s in small_dataset[0]:
        reach = s.intervals["reach"]
        assert np.array_equal(s.intervals["eval"].start, reach.start)
        assert np.array_equal(s.intervals["eval"].end, reach.end)
        assert np.allclose(reach.start, s.trials["movement_onset"])
        assert np.allclose(reach.end, s.trials["reach_end"])
        assert np.all(s.trials["go_cue"] < s.trials["movement_onset"])  # reaction time
        expected = {"hold", "reach", "eval", *SPLITS} | ({"return"} if s.metadata["task"] == "center-out" else set())
        assert set(s.intervals) == expected


def test_bell_shaped_reaches_and_still_holds(small_dataset):
    s = small_dataset[0][0]  # center-out
    vel = s.series["hand_vel"]
    speed = np.hypot(*vel.values.T)
    in_reach = s.intervals["reach"].contains(vel.timestamps)
    in_hold = s.intervals["hold"].contains(vel.timestamps)
    assert speed[in_hold].mean() < 0.1 * speed[in_reach].mean()
    # Peak speed near the middle of every reach, slow at both ends.
    for a, b in s.intervals["reach"]:
        t = vel.timestamps
        sel = (t >= a) & (t < b)
        peak = t[sel][np.argmax(speed[sel])]
        assert abs(peak - (a + b) / 2) < 0.2 * (b - a)
        assert speed[sel][0] < 0.3 * speed[sel].max() and speed[sel][-1] < 0.3 * speed[sel].max()
    # Center-out targets sit on the 8 cm circle in 8 directions; the hand gets there.
    pos = s.series["hand_pos"]
    at_end = np.searchsorted(pos.timestamps, s.trials["reach_end"])
    target = np.stack([s.trials["target_x"], s.trials["target_y"]], 1)
    assert np.allclose(np.hypot(*target.T), 8.0)
    assert np.abs(pos.values[at_end] - target).max() < 0.5


def test_refractory_period_and_firing_rates(small_dataset):
    sessions, truth = small_dataset
    for s in sessions:
        order = np.lexsort((s.spike_times, s.spike_units))
        t, u = s.spike_times[order], s.spike_units[order]
        same = u[1:] == u[:-1]
        assert np.diff(t)[same].min() >= 0.002
        rates = np.bincount(s.spike_units, minlength=s.num_units) / s.duration
        assert 0.5 < rates.min() and rates.max() < 120 and 3 < np.median(rates) < 30
        # Spike counts follow the true rates, less the spikes of a Poisson process at rate r
        # that fall within 2 ms of the one before (a fraction 1 - exp(-r * 2 ms)).
        r = truth.rates[s.id].astype(np.float64)
        expected = (r * np.exp(-r * 0.002)).sum() * truth.rate_step
        assert s.num_spikes / expected == pytest.approx(1.0, abs=0.01)
    for pool in truth.pools.values():
        assert 1.0 <= pool.baseline_rate.min() and pool.baseline_rate.max() <= 40.0
        assert 0.2 < np.mean(~pool.tuned) < 0.4
        assert 0.0 <= pool.lag.min() and pool.lag.max() <= 0.15


def test_neurons_shared_within_an_animal_never_across(small_dataset):
    sessions, truth = small_dataset
    idx = truth.unit_pool_index
    a0, a1 = truth.pools["sim-a0"], truth.pools["sim-a1"]
    assert truth.session_animal == {"sim-a0-s0": "sim-a0", "sim-a0-s1": "sim-a0", "sim-a1-s0": "sim-a1", "sim-a1-s1": "sim-a1"}
    shared = np.intersect1d(idx["sim-a0-s0"], idx["sim-a0-s1"])
    assert len(shared) > 0
    # The same pool neuron has the same tuning in both sessions...
    t0, t1 = truth.session_tuning("sim-a0-s0"), truth.session_tuning("sim-a0-s1")
    i = int(np.flatnonzero(idx["sim-a0-s0"] == shared[0])[0])
    j = int(np.flatnonzero(idx["sim-a0-s1"] == shared[0])[0])
    assert t0.preferred_direction[i] == t1.preferred_direction[j]
    # ... and the unit ids do not give it away (ids are positions in a shuffled order).
    assert not np.array_equal(np.sort(idx["sim-a0-s0"]), idx["sim-a0-s0"])
    # Animals have their own pools: no neuron of one animal reappears in the other.
    assert len(np.intersect1d(a0.baseline_rate, a1.baseline_rate)) == 0
    for s in sessions:
        assert len(np.unique(idx[s.id])) == s.num_units


def test_units_task_and_trials_follow_the_options():
    cfg = small_config(num_animals=1, sessions_per_animal=3, trials_per_session=4, min_units=40, max_units=45,
                       task="random-target")
    sessions, _ = simulate_dataset(cfg, show_progress=False)
    assert all(40 <= s.num_units <= 45 for s in sessions)
    assert [s.metadata["task"] for s in sessions] == ["random-target"] * 3
    assert all(len(s.trials["start"]) == 4 and "return" not in s.intervals for s in sessions)


@pytest.mark.parametrize("change, message", [
    (dict(min_units=0), "need 1 <= min_units <= max_units <= pool_size, got 0, 250, 300"),
    (dict(max_units=400), "need 1 <= min_units <= max_units <= pool_size, got 30, 400, 300"),
    (dict(task="maze"), "task must be one of center-out, random-target, mixed, not 'maze'"),
])
def test_config_validation(change, message):
    with pytest.raises(ValueError) as err:
        SimulationConfig(**change).validate()
    assert str(err.value) == message
