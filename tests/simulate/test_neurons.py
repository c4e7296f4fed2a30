"""Rates against a per-neuron reference, and the spike generator's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.simulate.neurons import TuningConfig, draw_pool, draw_spikes, firing_rates


def test_rates_match_a_per_neuron_reference():
    cfg = TuningConfig(pool_size=12, latent_dim=2)
    pool = draw_pool(np.random.default_rng(0), cfg)
    rng = np.random.default_rng(1)
    T, dt = 400, 0.01
    t = np.arange(T) * dt
    vel = rng.normal(0, 15, (T, 2))
    pos = rng.normal(0, 5, (T, 2))
    lat = rng.normal(0, 1, (T, 3))
    noise = rng.normal(0, 2, (T, 2))
    prep = rng.normal(0, 1, (T, 2))
    onset = rng.random(T)
    gain = np.exp(rng.normal(0, 0.1, 12))
    rates = firing_rates(pool, cfg, position=pos, velocity=vel, latents=lat, command_noise=noise,
                         preparation=prep, onset=onset, dt=dt, session_gain=gain)
    for n in range(12):
        # The neuron's view of the hand, lag seconds ahead, interpolated in time.
        look = np.minimum(t + pool.lag[n], t[-1])
        v = np.stack([np.interp(look, t, (vel + noise)[:, d]) for d in range(2)], 1) / cfg.velocity_scale
        p = np.stack([np.interp(look, t, pos[:, d]) for d in range(2)], 1) / cfg.position_scale
        speed = np.stack([np.interp(look, t, np.hypot(*((vel + noise) / cfg.velocity_scale).T))], 1)[:, 0]
        angle = np.arctan2(v[:, 1], v[:, 0])
        drive = (pool.direction_gain[n] * np.hypot(*v.T) * np.cos(angle - pool.preferred_direction[n])
                 + pool.speed_gain[n] * speed
                 + pool.position_gain[n] * (p[:, 0] * np.cos(pool.position_direction[n]) + p[:, 1] * np.sin(pool.position_direction[n]))
                 + lat @ pool.latent_loadings[n]
                 + pool.prep_gain[n] * np.hypot(*prep.T) * np.cos(np.arctan2(prep[:, 1], prep[:, 0]) - pool.prep_direction[n])
                 + pool.onset_gain[n] * onset)
        expected = np.minimum(cfg.max_rate, pool.baseline_rate[n] * np.exp(drive)) * gain[n]
        assert np.allclose(rates[:, n], expected, rtol=1e-9)
    # Untuned neurons ignore the hand and the task entirely; every neuron follows the global gain.
    for gains in (pool.direction_gain, pool.speed_gain, pool.position_gain, pool.prep_gain, pool.onset_gain):
        assert np.all(gains[~pool.tuned] == 0)
    assert np.all(pool.latent_loadings[:, 0] > 0)


def test_spikes_of_a_constant_rate():
    rate, dt, T = 30.0, 0.01, 20000  # 200 s of 3 units at 30 Hz
    rates = np.full((T, 3), rate)
    times, units = draw_spikes(np.random.default_rng(0), rates, dt=dt, refractory_period=0.002)
    assert np.all(np.diff(times) >= 0)
    counts = np.bincount(units, minlength=3)
    expected = rate * np.exp(-rate * 0.002) * T * dt  # Poisson spikes surviving the dead time
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    for u in range(3):
        isi = np.diff(times[units == u])
        assert isi.min() >= 0.002
        # Beyond the dead time the intervals are exponential: mean excess = 1 / rate.
        assert np.mean(isi - 0.002) == pytest.approx(1 / rate, rel=0.05)
