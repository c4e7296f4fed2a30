"""SpikeBuffer: the window it returns against a brute-force sort of everything pushed."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.serve.spike_buffer import SpikeBuffer


def reference_window(times, units, t0, t1):
    """Sorted (time, unit) pairs in [t0, t1), duplicates removed: computed without the buffer."""
    pairs = sorted({(t, u) for t, u in zip(times.tolist(), units.tolist()) if t0 <= t < t1})
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)


def test_chunks_in_any_order_give_the_sorted_window():
    rng = np.random.default_rng(0)
    times = np.round(rng.uniform(0, 10, 3000), 4)
    units = rng.integers(0, 20, 3000)
    buf = SpikeBuffer(capacity=10_000)
    # late chunks: the stream is cut into chunks and each chunk is delayed by up to 3 positions
    chunks = np.array_split(np.argsort(times), 60)
    order = np.argsort(np.arange(60) + rng.integers(0, 4, 60))
    for k in order:
        idx = rng.permutation(chunks[k])
        buf.add(times[idx], units[idx])
    for t0, t1 in [(0, 10), (2.5, 3.5), (9.9, 20)]:
        got_t, got_u = buf.window(t0, t1)
        ref_t, ref_u = reference_window(times, units, t0, t1)
        np.testing.assert_array_equal(got_t, ref_t)
        # equal times may hold several units: compare as sets per time via lexsort
        o = np.lexsort((got_u, got_t))
        np.testing.assert_array_equal(got_u[o], ref_u)
    assert np.all(np.diff(buf.times) >= 0)


def test_duplicates_are_dropped_and_counted():
    buf = SpikeBuffer(capacity=100)
    buf.add(np.array([1.0, 2.0, 2.0, 3.0]), np.array([0, 1, 1, 2]))  # one repeat inside the chunk
    buf.add(np.array([2.0, 2.0, 0.5]), np.array([1, 2, 0]))  # (2.0, 1) repeats a held spike
    assert buf.duplicates == 2
    t, u = buf.window(0, 10)
    assert t.tolist() == [0.5, 1.0, 2.0, 2.0, 3.0] and sorted(u[2:4].tolist()) == [1, 2]


def test_chunks_already_in_order_skip_the_sort_and_still_lose_repeats():
    buf = SpikeBuffer(capacity=100)
    buf.add(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 2]))
    buf.add(np.array([3.0, 4.0]), np.array([2, 0]))  # in order, but (3.0, 2) is held already
    buf.add(np.array([2.0, 2.5]), np.array([1, 1]))  # in order and late: (2.0, 1) repeats
    buf.add(np.array([5.0, 6.0]), np.array([3, 3]))  # in order, after everything held
    assert buf.duplicates == 2
    t, u = buf.window(0, 10)
    assert t.tolist() == [1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0] and u.tolist() == [0, 1, 1, 2, 0, 3, 3]


def test_prune_and_overflow_keep_memory_fixed():
    buf = SpikeBuffer(capacity=50)
    for k in range(20):  # 20 chunks of 10: more than the capacity
        buf.add(np.arange(10) * 0.01 + k * 0.1, np.zeros(10, dtype=np.int64))
    assert len(buf) == 50 and buf.overflowed == 150
    assert buf.times[0] == pytest.approx(1.5)  # the newest 50 remain
    buf.prune(1.8)
    assert buf.times[0] >= 1.8 and len(buf) == 20
    big = np.arange(80) * 1e-3 + 5.0  # a single chunk larger than the buffer: its newest spikes
    buf.add(big, np.zeros(80, dtype=np.int64))
    assert len(buf) == 50 and buf.times[-1] == pytest.approx(big[-1]) and buf.overflowed == 150 + 30 + 20
