"""Simulated reaching: trial timelines and the hand trajectory they produce.

Two tasks, both in a plane with the hand starting at the centre (0, 0) cm:

``center-out``
    Each trial: hold at the centre, a target appears on a circle (one of ``num_targets``
    directions), a go cue after an instructed delay, a reaction time, a reach out, a hold at
    the target, and a slower return to the centre. Phases: hold (centre hold up to movement
    onset, and the target hold), reach, return.
``random-target``
    Successive reaches between random targets in a square workspace: hold where the last
    reach ended, a new target appears (it is the go cue), a reaction time, then a reach to it.
    Phases: hold, reach (no return).

:func:`task_signals` gives what the task adds to neural activity besides the movement
itself: preparation for the upcoming reach and a transient at movement onset.

Every movement follows a minimum-jerk profile, so speed is bell-shaped, with a small random
sideways bow so that reaches are not perfectly straight, and the hand jitters slightly at
all times. The timeline is built as a list of *segments* (from point p0 at t0 to point p1 at
t1; a hold is a segment with p0 == p1), and the trajectory is evaluated for all samples at
once by looking up each sample's segment: no Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popdecode.data.intervals import Intervals

TASKS = ("center-out", "random-target")


@dataclass
class ReachingConfig:
    """Timing and geometry of the reaching task (durations in seconds, lengths in cm).

    Each ``(lo, hi)`` pair is the range of a uniform draw, made once per trial.
    """

    num_targets: int = 8  # center-out directions, evenly spaced
    reach_radius: float = 8.0  # center-out target distance
    workspace_half_width: float = 10.0  # random-target: targets in [-w, w]^2
    min_reach_distance: float = 4.0  # random-target: no tiny reaches
    center_hold: tuple[float, float] = (0.3, 0.6)  # before the target appears
    instructed_delay: tuple[float, float] = (0.3, 0.6)  # target on -> go cue (center-out)
    reaction_time: tuple[float, float] = (0.18, 0.32)  # go cue -> movement onset
    reach_duration: tuple[float, float] = (0.45, 0.75)  # for an 8 cm reach; scales with distance
    target_hold: tuple[float, float] = (0.2, 0.4)
    return_duration: tuple[float, float] = (0.55, 0.85)
    curvature_sd: float = 0.08  # sideways bow, as a fraction of the reach length
    hand_jitter: float = 0.05  # cm, sd of the slow positional jitter
    sample_rate: float = 100.0  # Hz, behaviour samples


@dataclass
class Reaching:
    """One session's behaviour: samples on a regular grid, the trial table, the phases."""

    timestamps: np.ndarray  # float64 [T], k / sample_rate
    position: np.ndarray  # float64 [T, 2] cm
    velocity: np.ndarray  # float64 [T, 2] cm/s
    trials: dict[str, np.ndarray]
    phases: dict[str, Intervals]  # hold, reach, return
    end: float  # end of the last trial (the session's domain is [0, end))


def _minimum_jerk(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of the path covered at normalised time s in [0, 1], and its derivative."""
    return 10 * s**3 - 15 * s**4 + 6 * s**5, 30 * s**2 - 60 * s**3 + 30 * s**4


def _bow(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sideways deviation shape (0 at both ends, 1 in the middle, flat ends) and derivative."""
    return 16 * s**2 * (1 - s) ** 2, 32 * s * (1 - s) * (1 - 2 * s)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(lo_hi[0], lo_hi[1], size=n)


def _center_out_trials(rng, cfg: ReachingConfig, n: int, speed_factor: float):
    """Trial table and movement segments of ``n`` center-out trials laid end to end."""
    target_id = rng.integers(0, cfg.num_targets, size=n)
    angle = 2 * np.pi * target_id / cfg.num_targets
    target = cfg.reach_radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    # Durations of every phase of every trial, then cumulative sums give the timeline.
    hold = _uniform(rng, cfg.center_hold, n)
    delay = _uniform(rng, cfg.instructed_delay, n)
    rt = _uniform(rng, cfg.reaction_time, n)
    reach = _uniform(rng, cfg.reach_duration, n) * speed_factor
    thold = _uniform(rng, cfg.target_hold, n)
    ret = _uniform(rng, cfg.return_duration, n) * speed_factor
    length = hold + delay + rt + reach + thold + ret
    start = np.concatenate([[0.0], np.cumsum(length)[:-1]])
    target_on = start + hold
    go_cue = target_on + delay
    onset = go_cue + rt
    reach_end = onset + reach
    return_start = reach_end + thold
    stop = return_start + ret
    trials = {
        "start": start, "stop": stop, "target_id": target_id.astype(np.int64),
        "target_angle": angle, "target_x": target[:, 0], "target_y": target[:, 1],
        "target_on": target_on, "go_cue": go_cue, "movement_onset": onset,
        "reach_end": reach_end, "return_start": return_start,
    }
    zero = np.zeros_like(target)
    moves = [(onset, reach_end, zero, target), (return_start, stop, target, zero)]
    phases = {
        "hold": Intervals.from_pairs(np.r_[start, reach_end], np.r_[onset, return_start]),
        "reach": Intervals.from_pairs(onset, reach_end),
        "return": Intervals.from_pairs(return_start, stop),
    }
    return trials, moves, phases


def _random_target_trials(rng, cfg: ReachingConfig, n: int, speed_factor: float):
    """Trial table and movement segments of ``n`` successive random-target reaches."""
    w = cfg.workspace_half_width
    targets = np.zeros((n + 1, 2))  # targets[0] is the starting point, the centre
    for i in range(1, n + 1):  # rejection keeps reaches longer than min_reach_distance
        while True:
            p = rng.uniform(-w, w, size=2)
            if np.hypot(*(p - targets[i - 1])) >= cfg.min_reach_distance:
                targets[i] = p
                break
    p0, p1 = targets[:-1], targets[1:]
    dist = np.hypot(*(p1 - p0).T)
    hold = _uniform(rng, cfg.target_hold, n)
    rt = _uniform(rng, cfg.reaction_time, n)
    # Longer reaches take longer, but less than proportionally (as people and monkeys do).
    reach = _uniform(rng, cfg.reach_duration, n) * speed_factor * np.sqrt(dist / cfg.reach_radius)
    length = hold + rt + reach
    start = np.concatenate([[0.0], np.cumsum(length)[:-1]])
    target_on = start + hold
    go_cue = target_on  # the target's appearance is the go signal
    onset = go_cue + rt
    stop = onset + reach
    d = p1 - p0
    trials = {
        "start": start, "stop": stop, "target_id": np.arange(n, dtype=np.int64),
        "target_angle": np.arctan2(d[:, 1], d[:, 0]), "target_x": p1[:, 0], "target_y": p1[:, 1],
        "target_on": target_on, "go_cue": go_cue, "movement_onset": onset, "reach_end": stop,
    }
    phases = {
        "hold": Intervals.from_pairs(start, onset),
        "reach": Intervals.from_pairs(onset, stop),
    }
    return trials, [(onset, stop, p0, p1)], phases


def smooth_noise(rng, n: int, dims: int, timescale_samples: float) -> np.ndarray:
    """Smooth Gaussian noise with unit variance per dimension and the given timescale.

    White noise goes through an exponential filter twice (once alone would leave a rough,
    white-noise derivative), by FFT since scipy is not a dependency.
    """
    k = np.exp(-np.arange(int(10 * timescale_samples) + 1) / timescale_samples)
    k = np.convolve(k, k)
    size = 1 << int(np.ceil(np.log2(n + len(k))))
    x = rng.standard_normal((n + len(k), dims))
    y = np.fft.irfft(np.fft.rfft(x, size, axis=0) * np.fft.rfft(k, size)[:, None], size, axis=0)
    y = y[len(k) : len(k) + n]  # skip the filter's warm-up
    return y / np.sqrt(np.sum(k**2))


def simulate_reaching(
    rng: np.random.Generator, *, task: str, num_trials: int, config: ReachingConfig,
    speed_factor: float = 1.0,
) -> Reaching:
    """Simulate ``num_trials`` trials of ``task``; ``speed_factor`` > 1 means slower reaches."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    make = _center_out_trials if task == "center-out" else _random_target_trials
    trials, moves, phases = make(rng, config, num_trials, speed_factor)
    end = float(trials["stop"][-1])

    # Segments: every movement, with the holds in between filled in as flat segments.
    t0 = np.concatenate([m[0] for m in moves])
    t1 = np.concatenate([m[1] for m in moves])
    p0 = np.concatenate([m[2] for m in moves])
    p1 = np.concatenate([m[3] for m in moves])
    order = np.argsort(t0)
    t0, t1, p0, p1 = t0[order], t1[order], p0[order], p1[order]
    bow = rng.normal(0.0, config.curvature_sd, size=len(t0))

    dt = 1.0 / config.sample_rate
    t = np.arange(int(np.floor(end * config.sample_rate))) * dt
    seg = np.clip(np.searchsorted(t0, t, side="right") - 1, 0, None)
    dur = t1[seg] - t0[seg]
    s = np.clip((t - t0[seg]) / dur, 0.0, 1.0)
    moving = (t >= t0[seg]) & (t < t1[seg])
    # Before a segment starts (the initial hold) the hand is at its start point, after it
    # ends (the hold until the next movement) at its end point: s clipped to 0 or 1 does that.
    frac, dfrac = _minimum_jerk(s)
    side, dside = _bow(s)
    delta = p1[seg] - p0[seg]
    normal = np.stack([-delta[:, 1], delta[:, 0]], axis=1) * bow[seg, None]
    position = p0[seg] + delta * frac[:, None] + normal * side[:, None]
    velocity = (delta * dfrac[:, None] + normal * dside[:, None]) / dur[:, None]
    velocity[~moving] = 0.0

    # Slow jitter of the hand (the arm is never perfectly still); its velocity is its derivative.
    jitter = config.hand_jitter * smooth_noise(rng, len(t) + 1, 2, 0.1 * config.sample_rate)
    position += jitter[:-1]
    velocity += np.diff(jitter, axis=0) / dt  # on the sample grid: matches a finite difference
    return Reaching(t, position, velocity, trials, phases, end)


def task_signals(
    r: Reaching, *, ramp: float = 0.2, decay: float = 0.1, onset_delay: float = 0.05,
    onset_width: float = 0.08,
) -> tuple[np.ndarray, np.ndarray]:
    """Signals of the task that are not hand movement, on the sample grid.

    ``preparation`` [T, 2]: the unit vector of the upcoming reach direction (the trials'
    ``target_angle``) times an envelope that ramps from 0 to 1 over ``ramp`` seconds after
    the target appears, holds until movement onset, then decays with time constant ``decay``.
    ``onset`` [T]: a bump peaking ``onset_delay`` after each movement onset (the
    condition-independent transient seen in motor cortex whatever the direction).
    """
    t = r.timestamps
    tr = r.trials
    k = np.searchsorted(tr["target_on"], t, side="right") - 1  # the trial whose target is up
    seen = k >= 0
    k = np.clip(k, 0, None)
    since_on = t - tr["target_on"][k]
    after_onset = np.clip(t - tr["movement_onset"][k], 0.0, None)
    envelope = np.clip(since_on / ramp, 0.0, 1.0) * np.exp(-after_onset / decay) * seen
    angle = tr["target_angle"][k]
    preparation = envelope[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    # Nearest movement onset (shifted by the delay) to each sample.
    peaks = tr["movement_onset"] + onset_delay
    j = np.searchsorted(peaks, t)
    before, after = peaks[np.clip(j - 1, 0, len(peaks) - 1)], peaks[np.clip(j, 0, len(peaks) - 1)]
    nearest = np.minimum(np.abs(t - before), np.abs(t - after))
    onset = np.exp(-0.5 * (nearest / onset_width) ** 2)
    return preparation, onset
