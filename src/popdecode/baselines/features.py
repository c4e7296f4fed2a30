"""Binned spike counts with lags: the input every baseline decoder reads.

The classic decoders of the POYO paper's table (Wiener filter, MLP, GRU) do not see spikes;
they see how many spikes each unit fired in a few short bins before the moment to decode.
For a behaviour sample at time ``t``, with bin width ``bin`` and ``lags`` bins of history,
bin ``k`` (k = 1 .. lags) covers

    [t - k * bin, t - (k - 1) * bin)

so the features are causal: nothing after ``t`` is used. ``future`` adds bins after ``t``,
[t + j * bin, t + (j + 1) * bin) for j = 0 .. future - 1, for decoders allowed to peek.

The feature matrix is laid out bin-major, oldest bin first: column ``b * units + u`` is
unit ``u`` in bin ``b``, where b = 0 is the oldest past bin (k = lags) and the last
``future`` bins come after ``t``. ``X.reshape(T, lags + future, units)`` is therefore the
sequence of count vectors in time order, which is what the GRU consumes.

To be comparable with POYO, the baselines are trained and scored at exactly the timestamps
POYO uses: every sample of the target series inside a split, restricted to the session's
``eval`` intervals for scoring (:func:`split_samples`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureConfig:
    """How spikes become features: bin width (s), past bins, future bins."""

    bin: float = 0.02
    lags: int = 10  # 10 bins of 20 ms: 200 ms of history
    future: int = 0

    @property
    def num_bins(self) -> int:
        return self.lags + self.future


def lagged_counts(session, timestamps, *, bin: float, lags: int, future: int = 0) -> np.ndarray:
    """Spike counts per unit in ``lags`` bins before and ``future`` bins after each timestamp.

    ``session`` is anything with ``unit_ids`` and ``window(t0, t1)`` (an in-memory
    :class:`~popdecode.data.session.Session` or a stored session). Returns float32
    ``[len(timestamps), (lags + future) * units]``, bin-major (see the module docstring).
    """
    if not bin > 0:
        raise ValueError(f"bin must be positive, got {bin}")
    if lags < 0 or future < 0 or lags + future == 0:
        raise ValueError(f"need lags >= 0, future >= 0 and at least one bin, got {lags}, {future}")
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    num_units = len(session.unit_ids)
    num_bins = lags + future
    out = np.zeros((len(t), num_bins, num_units), dtype=np.float32)
    if len(t) == 0 or num_units == 0:
        return out.reshape(len(t), num_bins * num_units)

    # Bin edges relative to each timestamp, oldest first: -lags*bin, ..., 0, ..., future*bin.
    offsets = np.arange(-lags, future + 1, dtype=np.float64) * bin
    # One read covers every bin of every timestamp; the window's clock starts at t0, so the
    # edges are moved to that clock too before comparing them with the spike times.
    t0 = float(t.min() + offsets[0])
    t1 = float(t.max() + offsets[-1])
    win = session.window(t0, t1)
    edges = (t[:, None] + offsets[None, :]) - t0  # [T, num_bins + 1]

    # Group the spikes by unit; a stable sort keeps each unit's spikes in time order.
    order = np.argsort(win.spike_units, kind="stable")
    times = np.asarray(win.spike_times, dtype=np.float64)[order]
    first = np.searchsorted(np.asarray(win.spike_units)[order], np.arange(num_units + 1))
    for u in range(num_units):
        s = times[first[u]:first[u + 1]]
        if len(s) == 0:
            continue
        # Spikes before each edge; the count in [a, b) is before(b) - before(a).
        before = np.searchsorted(s, edges, side="left")
        out[:, :, u] = np.diff(before, axis=1)
    return out.reshape(len(t), num_bins * num_units)


def split_samples(session, target: str, split: str, *, eval_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values of the ``target`` samples a baseline uses on ``split``.

    These are the samples of the target series inside the split's intervals whose values
    are all finite; with ``eval_mask=True`` they are further limited to the session's
    ``eval`` intervals (where R^2 is computed; everywhere when the session has none). This is
    the set of timestamps POYO's evaluation scores, so the numbers compare one to one.
    Training uses ``eval_mask=False``: every finite sample of the train split, weighted
    equally (POYO instead weights samples by movement phase).
    """
    series = session.series[target]
    ts = np.asarray(series.timestamps, dtype=np.float64)
    values = np.asarray(series.values, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    keep = session.split(split).contains(ts)
    if eval_mask and "eval" in session.intervals:
        keep &= session.intervals["eval"].contains(ts)
    keep &= np.isfinite(values).all(axis=1)
    return ts[keep], values[keep]
