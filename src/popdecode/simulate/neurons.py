"""Simulated motor-cortex neurons: an animal's pool, their firing rates, and their spikes.

Each animal has a *pool* of neurons with fixed tuning. A neuron fires at

    rate(t) = min(max_rate, baseline * exp(drive(t))) * session_gain

where the drive reads the hand state ``lag`` seconds in the future (motor cortex leads
movement), the task (:func:`~popdecode.simulate.reaching.task_signals`) and a few shared
latent fluctuations that have nothing to do with the hand. The
velocity the neurons encode, ``v = hand velocity + command noise``, differs from the hand's by
a smooth noise shared by all neurons (motor noise, arm dynamics the hand does not show),
growing with speed as motor noise does: more neurons cannot average it away, so it caps every
decoder's R^2 whatever the unit count, and equally for slow and fast reaches.

    drive = direction_gain * (v . e_pd) / v_scale         velocity along the preferred direction
          + speed_gain * |v| / v_scale                     speed, whatever the direction
          + position_gain * (p . e_pp) / p_scale           position along a preferred axis
          + prep_gain * (e_target . e_prep) * envelope(t)  preparing the upcoming reach
          + onset_gain * bump(t)                           a transient at movement onset
          + loadings . z(t)                                shared latent noise (not behaviour)

At rest at the centre the drive is 0 and the rate is the baseline. The exponential makes the
tuning curves sharper than a cosine and multiplies direction by speed; the first latent is
a slow global gain (every loading positive) that scales all rates together; preparatory
activity, tuned to the upcoming reach while the hand is still, uses its own preferred
direction. A linear read-out of counts cannot undo any of that (it reads a gain change or
preparation as movement), which leaves room for nonlinear decoders with longer context.
Untuned neurons (``untuned_fraction``) follow only the latents: no movement, preparation or
onset terms; only some tuned neurons carry position.

Spikes: an inhomogeneous Poisson process per unit (by time rescaling), then every spike that
follows another spike of the same unit by less than the refractory period is deleted (a
"paralyzable" dead time: one vectorised pass per unit).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class TuningConfig:
    """How an animal's pool of neurons is drawn. Each ``(lo, hi)`` is a uniform range."""

    pool_size: int = 300
    baseline_rate: tuple[float, float] = (1.0, 40.0)  # Hz, drawn log-uniformly
    max_rate: float = 200.0  # Hz, hard ceiling of the exponential
    untuned_fraction: float = 0.3
    position_tuned_fraction: float = 0.4
    direction_gain: tuple[float, float] = (0.25, 0.75)
    speed_gain: tuple[float, float] = (-0.2, 0.5)
    position_gain: tuple[float, float] = (0.1, 0.5)
    lag: tuple[float, float] = (0.0, 0.15)  # s, neuron leads the hand by this much
    velocity_scale: float = 20.0  # cm/s, a typical peak hand speed
    position_scale: float = 8.0  # cm, a typical reach
    latent_dim: int = 3  # shared fluctuations unrelated to behaviour
    latent_timescale: float = 0.3  # s
    latent_loading_sd: float = 0.4  # per neuron and latent dimension
    global_gain_sd: float = 0.5  # log-scale sd of a slow excitability drift shared by all
    global_gain_timescale: float = 2.0  # s
    prep_tuned_fraction: float = 0.6  # neurons active while preparing a reach
    prep_gain: tuple[float, float] = (0.3, 1.0)  # tuned to the upcoming reach direction
    onset_gain: tuple[float, float] = (0.0, 0.8)  # transient at movement onset, any direction
    command_noise_sd: float = 1.5  # cm/s, per axis: the velocity the neurons encode is not the hand's
    command_noise_speed: float = 0.15  # ... plus this fraction of the hand speed (signal-dependent)
    command_noise_timescale: float = 0.15  # s
    session_gain_sd: float = 0.1  # log-normal per-session change of each unit's rate
    refractory_period: float = 0.002  # s


@dataclass
class NeuronPool:
    """Tuning of every neuron in one animal's pool (arrays of length ``pool_size``)."""

    baseline_rate: np.ndarray  # Hz
    preferred_direction: np.ndarray  # rad, velocity tuning
    direction_gain: np.ndarray
    speed_gain: np.ndarray
    position_direction: np.ndarray  # rad, position tuning axis
    position_gain: np.ndarray
    lag: np.ndarray  # s
    latent_loadings: np.ndarray  # [pool_size, 1 + latent_dim]; column 0: the global gain
    prep_direction: np.ndarray  # rad, preferred upcoming reach direction while preparing
    prep_gain: np.ndarray
    onset_gain: np.ndarray
    tuned: np.ndarray  # bool

    @property
    def size(self) -> int:
        return len(self.baseline_rate)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def subset(self, index: np.ndarray) -> "NeuronPool":
        return NeuronPool(**{k: v[index] for k, v in self.arrays().items()})


def draw_pool(rng: np.random.Generator, cfg: TuningConfig) -> NeuronPool:
    """Draw an animal's pool of neurons."""
    n = cfg.pool_size
    lo, hi = np.log(cfg.baseline_rate[0]), np.log(cfg.baseline_rate[1])
    tuned = rng.random(n) >= cfg.untuned_fraction
    pos_tuned = tuned & (rng.random(n) < cfg.position_tuned_fraction)
    return NeuronPool(
        baseline_rate=np.exp(rng.uniform(lo, hi, n)),
        preferred_direction=rng.uniform(-np.pi, np.pi, n),
        direction_gain=rng.uniform(*cfg.direction_gain, n) * tuned,
        speed_gain=rng.uniform(*cfg.speed_gain, n) * tuned,
        position_direction=rng.uniform(-np.pi, np.pi, n),
        position_gain=rng.uniform(*cfg.position_gain, n) * pos_tuned,
        lag=rng.uniform(*cfg.lag, n),
        latent_loadings=np.concatenate([
            rng.uniform(0.5, 1.5, (n, 1)),  # every neuron follows the global gain, some more
            rng.normal(0.0, cfg.latent_loading_sd, (n, cfg.latent_dim)),
        ], axis=1),
        # Preparatory tuning is unrelated to movement tuning (it lives in other dimensions
        # of the population's activity), so a direction of its own.
        prep_direction=rng.uniform(-np.pi, np.pi, n),
        prep_gain=rng.uniform(*cfg.prep_gain, n) * (rng.random(n) < cfg.prep_tuned_fraction) * tuned,
        onset_gain=rng.uniform(*cfg.onset_gain, n) * tuned,
        tuned=tuned,
    )


def _lagged(y: np.ndarray, lag_samples: np.ndarray) -> np.ndarray:
    """Column n of y [T, N] read ``lag_samples[n]`` samples ahead (linear interpolation).

    Past the end the last sample is held. One slice per neuron: no [T, N] index arrays.
    """
    T, N = y.shape
    whole = np.floor(lag_samples).astype(np.int64)
    frac = lag_samples - whole
    pad = int(whole.max(initial=0)) + 2
    rows = np.concatenate([y.T, np.repeat(y[-1:].T, pad, axis=1)], axis=1)  # [N, T + pad], contiguous
    out = np.empty((N, T))
    for n in range(N):
        k = whole[n]
        out[n] = rows[n, k : k + T] * (1 - frac[n]) + rows[n, k + 1 : k + 1 + T] * frac[n]
    return out.T


def firing_rates(
    pool: NeuronPool, cfg: TuningConfig, *, position: np.ndarray, velocity: np.ndarray,
    latents: np.ndarray, command_noise: np.ndarray, preparation: np.ndarray, onset: np.ndarray,
    dt: float, session_gain: np.ndarray,
) -> np.ndarray:
    """True rates (Hz) [T, N] of the pool's neurons, on the behaviour's sample grid.

    ``latents`` [T, 1 + latent_dim] (column 0 the global gain, in log units), ``preparation``
    [T, 2] and ``onset`` [T] come from :func:`~popdecode.simulate.reaching.task_signals`.
    """
    v = (velocity + command_noise) / cfg.velocity_scale
    p = position / cfg.position_scale
    state = np.concatenate([v, np.hypot(v[:, 0], v[:, 1])[:, None], p], axis=1)  # [T, 5]
    # The behavioural drive is linear in the state, so project first ([T, 5] @ [5, N]) and
    # apply each neuron's lag to its own column: memory stays [T, N].
    weights = np.stack([
        pool.direction_gain * np.cos(pool.preferred_direction),
        pool.direction_gain * np.sin(pool.preferred_direction),
        pool.speed_gain,
        pool.position_gain * np.cos(pool.position_direction),
        pool.position_gain * np.sin(pool.position_direction),
    ])
    prep = pool.prep_gain * np.stack([np.cos(pool.prep_direction), np.sin(pool.prep_direction)])
    drive = (
        _lagged(state @ weights, pool.lag / dt)
        + latents @ pool.latent_loadings.T
        + preparation @ prep
        + onset[:, None] * pool.onset_gain
    )
    rate = np.minimum(cfg.max_rate, pool.baseline_rate * np.exp(drive))
    return rate * session_gain


def draw_spikes(
    rng: np.random.Generator, rates: np.ndarray, *, dt: float, refractory_period: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Spike times (sorted) and unit indices from rates [T, N] held constant over bins of dt.

    Time rescaling: with the integrated rate L(t), a unit-rate Poisson process on [0, L(end)]
    (a Poisson number of uniform points) mapped back through L^-1 is a Poisson process with
    the given rate. Then a spike closer than ``refractory_period`` to the unit's previous
    spike is deleted.
    """
    T, N = rates.shape
    # Integrated rate at the bin edges, one contiguous row per unit.
    integral = np.zeros((N, T + 1))
    np.cumsum(rates.T * dt, axis=1, out=integral[:, 1:])
    times, units = [], []
    for n in range(N):
        L = integral[n]
        s = np.sort(rng.uniform(0.0, L[-1], rng.poisson(L[-1])))
        k = np.clip(np.searchsorted(L, s, side="right") - 1, 0, T - 1)
        t = (k + (s - L[k]) / np.maximum(L[k + 1] - L[k], 1e-300)) * dt
        keep = np.concatenate([[True], np.diff(t) >= refractory_period])
        times.append(t[keep])
        units.append(np.full(int(keep.sum()), n, dtype=np.int64))
    times, units = np.concatenate(times), np.concatenate(units)
    order = np.argsort(times, kind="stable")
    return times[order], units[order]
