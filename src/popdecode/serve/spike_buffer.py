"""The spikes of the last window of a live stream, sorted by time, in fixed memory.

A live decoder asks the same question 50 times a second: which spikes fell in [t - 1 s, t)?
Kept sorted, the answer is two binary searches and two array views, whatever the rate. Spikes
rarely arrive in order across the whole stream (several acquisition threads, network
reordering), so :meth:`SpikeBuffer.add` sorts each chunk and merges it into the buffer's tail:
a chunk that lands after everything already held (the usual case) is a plain copy; a late one
re-sorts only the part of the buffer it overlaps.

Memory is preallocated (``capacity`` spikes) and never grows: :meth:`prune` drops what falls
out of the window, and when a burst fills the buffer anyway the oldest spikes go first, and are
counted. Exact duplicates (same unit, same time, as a resent network packet gives) are dropped
and counted too; the counts are the caller's to report, never an error.
"""

from __future__ import annotations

import numpy as np


class SpikeBuffer:
    """Spikes ``(time, unit)`` sorted by time; ``capacity`` of them at most.

    Attributes ``duplicates`` and ``overflowed`` count what :meth:`add` dropped.
    """

    def __init__(self, *, capacity: int = 1 << 18):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self._times = np.empty(self.capacity, dtype=np.float64)
        self._units = np.empty(self.capacity, dtype=np.int64)
        self._lo = self._hi = 0  # the live spikes are [lo, hi)
        self.duplicates = 0
        self.overflowed = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def times(self) -> np.ndarray:
        return self._times[self._lo:self._hi]

    @property
    def units(self) -> np.ndarray:
        return self._units[self._lo:self._hi]

    def add(self, times: np.ndarray, units: np.ndarray, *, increasing: bool | None = None) -> None:
        """Insert a chunk of spikes (any order); both arrays already checked by the caller.
        ``increasing``: whether the caller already found ``times`` strictly increasing (None:
        find out here)."""
        if len(times) == 0:
            return
        t, u = times, units
        dup = None  # which spikes of the chunk repeat another (None: none can)
        # A chunk in strictly increasing time (what a rig sends) needs no sort and cannot
        # repeat itself; skipping both is most of the cost of a small chunk.
        if not (strictly_increasing(t) if increasing is None else increasing):
            order = np.lexsort((u, t))
            t, u = t[order], u[order]
            dup = np.zeros(len(t), dtype=bool)
            dup[1:] = (t[1:] == t[:-1]) & (u[1:] == u[:-1])
        live_t = self.times
        if len(live_t) and t[0] <= live_t[-1]:
            # Only spikes at a time already held can repeat one; there are almost never any.
            if dup is None:
                dup = np.zeros(len(t), dtype=bool)
            a = np.searchsorted(live_t, t, side="left")
            b = np.searchsorted(live_t, t, side="right")
            for i in np.flatnonzero(b > a):
                dup[i] |= bool((self._units[self._lo + a[i]:self._lo + b[i]] == u[i]).any())
        if dup is not None and dup.any():
            self.duplicates += int(dup.sum())
            t, u = t[~dup], u[~dup]
        if len(t) > self.capacity:  # a chunk larger than the whole buffer: its newest spikes
            self.overflowed += len(t) - self.capacity
            t, u = t[-self.capacity:], u[-self.capacity:]
        self._make_room(len(t))
        if len(self) == 0 or t[0] >= self._times[self._hi - 1]:
            self._times[self._hi:self._hi + len(t)] = t
            self._units[self._hi:self._hi + len(t)] = u
        else:
            # Merge with the tail the chunk overlaps; equal times keep the held spike first.
            p = self._lo + int(np.searchsorted(self.times, t[0], side="right"))
            tail_t = np.concatenate([self._times[p:self._hi], t])
            tail_u = np.concatenate([self._units[p:self._hi], u])
            order = np.argsort(tail_t, kind="stable")
            self._times[p:p + len(order)] = tail_t[order]
            self._units[p:p + len(order)] = tail_u[order]
        self._hi += len(t)

    def _make_room(self, n: int) -> None:
        if self._hi + n <= self.capacity:
            return
        excess = len(self) + n - self.capacity
        if excess > 0:  # full even after compaction: the oldest spikes make way
            self.overflowed += excess
            self._lo += excess
        live = len(self)
        self._times[:live] = self._times[self._lo:self._hi]
        self._units[:live] = self._units[self._lo:self._hi]
        self._lo, self._hi = 0, live

    def prune(self, before: float) -> None:
        """Forget every spike earlier than ``before``."""
        self._lo = self._span(before, before)[0]

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Views of the spikes with t0 <= time < t1 (valid until the next :meth:`add`)."""
        i0, i1 = self._span(t0, t1)
        return self._times[i0:i1], self._units[i0:i1]

    def advance(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`prune` (t0) and :meth:`window` (t0, t1) in one search: a live decoder's tick."""
        i0, i1 = self._span(t0, t1)
        self._lo = i0
        return self._times[i0:i1], self._units[i0:i1]

    def _span(self, t0: float, t1: float) -> tuple[int, int]:
        """Positions [i0, i1) in the arrays of the live spikes with t0 <= time < t1."""
        i0, i1 = self._times[self._lo:self._hi].searchsorted((t0, max(t0, t1)))
        return self._lo + int(i0), self._lo + int(i1)


def strictly_increasing(times: np.ndarray) -> bool:
    """Whether ``times`` (at least one) strictly increase; False at any NaN."""
    return len(times) == 1 or bool((times[1:] > times[:-1]).all())
