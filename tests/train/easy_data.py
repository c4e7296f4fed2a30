"""Tiny synthetic sessions that a small POYO learns in seconds (shared by train and evaluate tests).

Hand velocity is a pair of slow sinusoids; every unit fires as a Poisson process whose rate
is an exponential of the velocity along its preferred direction. Trials are back-to-back
3 s blocks dealt to train / valid / test; ``reach`` covers the middle of every trial and is
also the ``eval`` mask.
"""

from __future__ import annotations

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.train.config import TrainConfig


def easy_session(sid: str, *, seed: int, units: int = 12, seconds: float = 60.0, trial: float = 3.0,
                 readout: str = "hand_vel") -> Session:
    rng = np.random.default_rng(seed)
    dt = 0.001
    t = np.arange(0.0, seconds, dt)
    phase = rng.uniform(0, 2 * np.pi, 2)
    vel = np.stack([np.sin(2 * np.pi * 0.4 * t + phase[0]), np.cos(2 * np.pi * 0.27 * t + phase[1])], axis=1)
    angles = rng.uniform(0, 2 * np.pi, units)
    pref = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rates = 20.0 * np.exp(1.2 * vel @ pref.T)  # [T, units], Hz
    fired = rng.random(rates.shape) < rates * dt
    ti, ui = np.nonzero(fired)
    spike_times = t[ti] + rng.uniform(0, dt, len(ti))
    order = np.argsort(spike_times, kind="stable")
    beh_t = np.arange(0.005, seconds, 0.01)  # 100 Hz
    beh_v = vel[np.round(beh_t / dt).astype(int)].astype(np.float32) * 10.0 + np.float32(3.0)

    starts = np.arange(0.0, seconds - trial + 1e-9, trial)
    ends = starts + trial
    kind = np.array(["train", "train", "valid", "train", "test", "train", "train"] * 10)[: len(starts)]
    valid = Intervals.from_pairs(starts[kind == "valid"], ends[kind == "valid"])
    test = Intervals.from_pairs(starts[kind == "test"], ends[kind == "test"])
    domain = Intervals(np.array([0.0]), np.array([seconds]))
    train = domain.difference(valid.widen(1.0).union(test.widen(1.0)))
    reach = Intervals.from_pairs(starts + 0.5, ends - 0.5)
    return Session(
        id=sid,
        spike_times=spike_times[order],
        spike_units=ui[order],
        unit_ids=[f"u{i}" for i in range(units)],
        series={readout: Series(beh_t, beh_v, ["vx", "vy"], "cm/s")},
        targets=[readout],
        trials={"start": starts, "stop": ends},
        intervals={"train": train, "valid": valid, "test": test, "reach": reach, "eval": reach},
        domain=domain,
    )


def preferred_angles(seed: int, units: int) -> np.ndarray:
    """The preferred directions easy_session(seed=...) drew (its second draw, after the phases)."""
    rng = np.random.default_rng(seed)
    rng.uniform(0, 2 * np.pi, 2)
    return rng.uniform(0, 2 * np.pi, units)


def easy_sessions(n: int = 2, **kwargs) -> list[Session]:
    return [easy_session(f"easy-{i}", seed=100 + i, **kwargs) for i in range(n)]


def two_task_sessions() -> list[Session]:
    """easy-0 decodes ``hand_vel``, easy-1 ``cursor_vel``: a pool with two readouts."""
    return [easy_session("easy-0", seed=100), easy_session("easy-1", seed=101, readout="cursor_vel")]


# A model small enough to train in a few seconds on one core.
TINY_MODEL = dict(dim=32, depth=1, num_latents_per_step=4, cross_heads=1, self_heads=1, dim_head=16,
                  ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0)


def tiny_config(**kw) -> TrainConfig:
    """A training configuration of :data:`TINY_MODEL` on :func:`easy_sessions` (2 epochs of batch 8)."""
    kw.setdefault("model_overrides", dict(TINY_MODEL))
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 3e-3, "seed": 0, **kw})
