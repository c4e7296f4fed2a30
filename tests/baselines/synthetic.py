"""Small synthetic sessions for the baseline tests: spikes that encode a 2-D velocity.

Units are cosine-tuned to a smooth velocity 100 ms ahead of their spikes (motor cortex
leads movement), so lagged counts decode the velocity well. Trials of 2 s are separated by
1 s gaps; every 5th trial is valid, every 5th (offset 2) is test; train is the rest of the
recording minus those trials widened by 0.5 s; ``eval`` is the second half of each trial.
"""

from __future__ import annotations

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session


def make_session(
    session_id: str = "s0", *, seed: int = 0, num_units: int = 30, num_trials: int = 40,
    sample_rate: float = 100.0, nan_every: int = 0,
) -> Session:
    rng = np.random.default_rng(seed)
    trial_len, gap = 2.0, 1.0
    duration = num_trials * (trial_len + gap)
    # Smooth velocity: a few random sinusoids per dimension.
    fine = np.arange(0.0, duration, 0.001)
    freqs = rng.uniform(0.2, 1.0, size=(2, 3))
    phases = rng.uniform(0, 2 * np.pi, size=(2, 3))
    def velocity(t):
        return np.stack([np.sin(2 * np.pi * freqs[d] * t[:, None] + phases[d]).sum(1) for d in range(2)], 1) / 1.5

    directions = rng.normal(size=(num_units, 2))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    base = rng.uniform(10.0, 30.0, size=num_units)
    rate = base * np.exp(velocity(fine + 0.1) @ directions.T)  # [fine, units], Hz
    fired = rng.random(rate.shape) < rate * 0.001
    ti, ui = np.nonzero(fired)
    times = fine[ti] + rng.uniform(0, 0.001, size=len(ti))
    order = np.argsort(times, kind="stable")

    ts = np.arange(0.0, duration, 1.0 / sample_rate) + 0.5 / sample_rate
    values = velocity(ts).astype(np.float32)
    if nan_every:
        values[::nan_every, 0] = np.nan

    starts = np.arange(num_trials) * (trial_len + gap) + gap / 2
    stops = starts + trial_len
    idx = np.arange(num_trials)
    valid = Intervals(starts[idx % 5 == 0], stops[idx % 5 == 0])
    test = Intervals(starts[idx % 5 == 2], stops[idx % 5 == 2])
    domain = Intervals(np.array([0.0]), np.array([duration]))
    train = domain.difference(valid.widen(0.5).union(test.widen(0.5)))
    return Session(
        id=session_id, spike_times=times[order], spike_units=ui[order],
        unit_ids=[f"u{i}" for i in range(num_units)],
        series={"hand_vel": Series(ts, values, ["x", "y"], "a.u.")},
        targets=["hand_vel"],
        trials={"start": starts, "stop": stops},
        intervals={
            "train": train, "valid": valid, "test": test,
            "eval": Intervals(starts + trial_len / 2, stops),
        },
        domain=domain,
    )
