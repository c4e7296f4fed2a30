"""Unit embeddings that start from what each unit encodes (``popdecode train --unit-init tuning``).

Why. POYO starts every unit's embedding at random (N(0, 0.02) per coordinate). With one
session that is harmless: a fixed random code per unit is something the shared network can
learn to read. With many sessions it is what keeps a run on its initial plateau, where it
predicts the mean: every session's units are a *different* random code for the same
behaviour, so the gradients the sessions send into the shared weights point in unrelated
directions and mostly cancel, and each unit's row can only learn once the shared weights
read something. The plateau's length grows with the number of sessions (BENCHMARKS.md,
"Scaling study" and "Why bigger sets stay on the plateau").

What. Before the first step, each unit's row is moved towards a point that depends only on
its tuning, through one projection that every session shares, so that units which encode
the same thing start near each other whichever session they come from:

1. :func:`unit_tuning`: over the session's training split, the unit's spike count in a
   ``bin_width`` window around each behaviour sample, correlated with every dimension of
   every readout the session decodes (normalised targets), and the log of its mean rate.
   Readouts a session does not decode give 0.
2. :func:`init_from_tuning`: the features are standardised over all units of the run and
   mapped to the embedding width by a fixed Gaussian matrix (seeded); each row becomes
   ``emb_init_scale * (sqrt(share) * projected + sqrt(1 - share) * its random start / emb_init_scale)``,
   which keeps the rows' scale and keeps units of identical tuning apart.

Only the start changes: training then moves every row as before. The labels used are the
training split's, which training reads anyway.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from popdecode.train.setup import unit_names

BIN_WIDTH = 0.05  # seconds of spikes counted around a behaviour sample: shorter bins are mostly Poisson noise
MAX_SAMPLES = 200_000  # behaviour samples per session used for the correlations (evenly spaced)


def _samples_within(session, span, name: str, mean: np.ndarray, std: np.ndarray):
    """Timestamps and normalised values of a readout inside ``span`` (all samples when it is
    empty), finite rows only, at most MAX_SAMPLES of them."""
    series = session.series[name]
    times = np.asarray(series.timestamps, dtype=np.float64)
    values = (np.asarray(series.values, dtype=np.float64) - mean) / std
    keep = np.isfinite(values).all(axis=1) & (span.contains(times) if len(span) else True)
    times, values = times[keep], values[keep]
    stride = max(1, len(times) // MAX_SAMPLES)
    return times[::stride], values[::stride]


def unit_tuning(session, readouts: dict[str, int], normalization: dict, *, bin_width: float = BIN_WIDTH,
                within=None) -> np.ndarray:
    """Features of each unit, ``[num_units, sum(readouts.values()) + 1]``: the correlation of its
    spike count around each behaviour sample with each readout dimension (readouts in the
    given order; 0 for those the session does not decode), then log(1 + spikes per second).
    Measured over ``within`` (:class:`~popdecode.data.intervals.Intervals`; adaptation passes
    the labelled trials), by default the train split (the whole session when it has none)."""
    spike_times = np.asarray(session.spike_times, dtype=np.float64)
    spike_units = np.asarray(session.spike_units)
    by_unit = np.lexsort((spike_times, spike_units))
    times_sorted, units_sorted = spike_times[by_unit], spike_units[by_unit]
    starts = np.searchsorted(units_sorted, np.arange(session.num_units + 1))

    out = np.zeros((session.num_units, sum(readouts.values()) + 1))
    span = session.split("train") if within is None else within
    inside = span.contains(spike_times) if len(span) else np.ones(len(spike_times), bool)
    seconds = span.duration if len(span) else session.duration
    out[:, -1] = np.log1p(np.bincount(spike_units[inside], minlength=session.num_units) / max(seconds, 1e-9))
    column = 0
    for name, dim in readouts.items():
        if name in session.targets:
            t, v = _samples_within(session, span, name, *normalization[name])
            if len(t) > 1:
                v = v - v.mean(axis=0)
                v_norm = np.sqrt((v**2).sum(axis=0))
                v_norm = np.where(v_norm > 0, v_norm, 1.0)
                for u in range(session.num_units):
                    own = times_sorted[starts[u] : starts[u + 1]]
                    counts = (np.searchsorted(own, t + bin_width / 2) - np.searchsorted(own, t - bin_width / 2)).astype(float)
                    c = counts - counts.mean()
                    c_norm = np.sqrt(c @ c)
                    if c_norm > 0:
                        out[u, column : column + dim] = (c @ v) / (c_norm * v_norm)
        column += dim
    return out


def init_from_tuning(model, sessions: Sequence, normalization: dict, *, seed: int, share: float = 0.5) -> None:
    """Move each of ``sessions``' unit rows in ``model.unit_vocab`` to its tuning (see the module
    docstring). ``normalization``: :func:`~popdecode.train.setup.compute_normalization`'s."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    readouts = model.readout_dims
    features = [unit_tuning(s, readouts, normalization) for s in sessions]
    stacked = np.concatenate(features)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    dim, scale = model.config.dim, model.config.emb_init_scale
    projection = np.random.default_rng(seed).standard_normal((stacked.shape[1], dim)) / np.sqrt(stacked.shape[1])
    weight = model.unit_vocab.weight
    with torch.no_grad():
        for session, f in zip(sessions, features):
            rows = torch.as_tensor(model.unit_vocab.index(unit_names(session)), device=weight.device)
            tuned = torch.as_tensor(((f - mean) / std) @ projection, dtype=weight.dtype, device=weight.device)
            weight[rows] = np.sqrt(share) * scale * tuned + np.sqrt(1 - share) * weight[rows]
