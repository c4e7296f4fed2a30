"""sample_index: times that went through window arithmetic find their recorded sample."""

from __future__ import annotations

import numpy as np

from popdecode.data.session import sample_index


def test_sample_index_takes_the_nearest_sample_within_the_tolerance_and_minus_one_elsewhere():
    recorded = np.arange(5) * 0.01 + 2.0
    # Rounding errors on both sides, the ends, a time between samples, times outside.
    query = np.array([2.0 - 4e-7, 2.01 + 3e-7, 2.04, 2.02 - 9e-7, 2.014, 1.9, 2.05, 2.04 + 2e-6])
    np.testing.assert_array_equal(sample_index(recorded, query), [0, 1, 4, 2, -1, -1, -1, -1])
    np.testing.assert_array_equal(sample_index(recorded, query, tolerance=0.006), [0, 1, 4, 2, 1, -1, -1, 4])
    np.testing.assert_array_equal(sample_index(np.zeros(0), np.array([1.0, 2.0])), [-1, -1])
