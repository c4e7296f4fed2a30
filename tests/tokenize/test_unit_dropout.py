"""The number of kept units follows the reference's distribution (spec section 4)."""

from __future__ import annotations

import numpy as np

from popdecode.tokenize.unit_dropout import keep_units, num_units_density, sample_num_units


def draws(n, num_units=1000, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return np.array([sample_num_units(num_units, rng, **kw) for _ in range(n)])


def test_range_and_histogram_match_closed_form():
    x = draws(20000)
    assert x.min() >= 30 and x.max() <= 299
    edges = np.arange(30, 301, 30)  # 9 bins of 30 units
    observed = np.histogram(x, bins=edges)[0] / len(x)
    density = num_units_density(np.arange(30, 300), min_units=30, mode_units=100, max_units=300)
    expected = np.add.reduceat(density, edges[:-1] - 30)
    np.testing.assert_allclose(observed, expected, atol=0.012)  # ~3.5 sd of a binomial bin
    assert abs(density.sum() - 1) < 1e-9


def test_shape_peak_at_mode_flatter_than_the_nominal_triangle():
    d = num_units_density(np.arange(30, 300), min_units=30, mode_units=100, max_units=300)
    assert np.argmax(d) + 30 in (99, 100)
    # c (1 - ln c) at c = 0.4 over c = 0.1: the reference's real peak-to-end ratio, not 4.
    # (integer cells average over [n, n + 1), hence the small tolerance)
    ratio = d[70] / d[0]
    assert abs(ratio - (0.4 * (1 - np.log(0.4))) / (0.1 * (1 - np.log(0.1)))) < 0.05
    assert ratio < 2.5  # not the nominal 4


def test_small_population_keeps_everyone():
    rng = np.random.default_rng(0)
    assert all(sample_num_units(29, rng) == 29 for _ in range(50))
    assert keep_units(12, rng).tolist() == list(range(12))
    # a population inside the range is capped at its size
    x = draws(2000, num_units=60)
    assert x.max() == 60 and x.min() >= 30 and (x == 60).mean() > 0.8


def test_kept_subset_is_uniform_over_units():
    rng = np.random.default_rng(1)
    counts = np.zeros(400)
    for _ in range(2000):
        kept = keep_units(400, rng)
        assert np.all(np.diff(kept) > 0)
        counts[kept] += 1
    # each unit is kept with the same probability: E[n] / 400
    p = counts / 2000
    assert p.std() < 0.02 and abs(p.mean() - counts.sum() / 2000 / 400) < 1e-12
