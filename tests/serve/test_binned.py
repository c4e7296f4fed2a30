"""spread_counts: binned counts back to spike times that re-bin to the same counts."""

from __future__ import annotations

import numpy as np

from popdecode.serve.binned import spread_counts


def test_spread_spikes_rebin_to_their_counts():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(50, 7))
    width = 0.02
    ends = 10.0 + width * np.arange(1, 51)
    times, columns = spread_counts(counts, ends, width)
    assert len(times) == counts.sum()
    bins = np.floor((times - 10.0) / width + 1e-9).astype(int)
    rebinned = np.zeros_like(counts)
    np.add.at(rebinned, (bins, columns), 1)
    np.testing.assert_array_equal(rebinned, counts)
    # evenly spread: a bin with c spikes of a unit puts them at (k + 0.5) / c of the bin
    sel = (bins == 3) & (columns == 2)
    c = counts[3, 2]
    np.testing.assert_allclose(np.sort(times[sel]), ends[3] - width + (np.arange(c) + 0.5) * width / c)


def test_invalid_counts_become_unknown_units():
    times, columns = spread_counts(np.array([[1.0, np.nan], [-1.0, 1.5]]), np.array([1.0, 2.0]), 0.5)
    assert sorted(columns.tolist()) == [-1, -1, -1, 0]
