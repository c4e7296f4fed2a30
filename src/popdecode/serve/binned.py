"""Binned counts back to spike times, for rigs that send threshold crossings per bin.

A bin [end - width, end) that counted c spikes of a unit becomes c spike times spread evenly
inside it, at end - width + (k + 0.5) * width / c for k = 0 .. c - 1: the same number of spikes
in the same bin, at the times whose mean is the bin's centre. The real monkey recordings of
this project were made the other way round (counts per 100 ms bin, times drawn inside each
bin), so a model trained on them has seen exactly this kind of timing.

Counts that are negative, not whole, or not finite are invalid; they are skipped and counted
by the caller's decoder as unknown (their unit index is -1).
"""

from __future__ import annotations

import numpy as np


def spread_counts(counts: np.ndarray, bin_ends: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, columns): one entry per counted spike, for ``counts`` [bins, units] of bins of
    ``width`` seconds that end at ``bin_ends`` [bins]. Not sorted."""
    counts = np.asarray(counts, dtype=np.float64)
    bin_ends = np.asarray(bin_ends, dtype=np.float64).reshape(-1)
    if counts.ndim != 2 or len(counts) != len(bin_ends):
        raise ValueError(f"counts must be [bins, units] with one end time per bin, got {counts.shape} and {bin_ends.shape}")
    valid = np.isfinite(counts) & (counts >= 0) & (np.floor(counts) == counts)
    c = np.where(valid, counts, 0).astype(np.int64).reshape(-1)
    bins, units = np.divmod(np.arange(c.size), counts.shape[1])
    n = int(c.sum())
    # k-th spike of its (bin, unit) cell: position in the flattened cumulative count
    cell = np.repeat(np.arange(c.size), c)
    k = np.arange(n) - np.repeat(np.cumsum(c) - c, c)
    times = bin_ends[bins[cell]] - width + (k + 0.5) * width / c[cell]
    columns = units[cell]
    bad = int((~valid).sum())
    if bad:  # an invalid count becomes one spike of unit -1, which the decoder drops and counts
        b, u = np.nonzero(~valid)
        times = np.concatenate([times, bin_ends[b] - width / 2])
        columns = np.concatenate([columns, np.full(bad, -1, dtype=np.int64)])
    return times, columns
