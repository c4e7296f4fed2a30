"""Sets of time intervals: splits, trial phases, outlier segments, evaluation masks.

An :class:`Intervals` is a sorted list of disjoint half-open intervals [start, end) in
seconds. Every named interval set of a session (``train``, ``valid``, ``test``, ``reach``,
``hold``, ``outlier``, ``eval``...) is one of these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intervals:
    start: np.ndarray  # float64 [K], sorted, disjoint
    end: np.ndarray  # float64 [K], end > start

    def __post_init__(self):
        start = np.asarray(self.start, dtype=np.float64).reshape(-1)
        end = np.asarray(self.end, dtype=np.float64).reshape(-1)
        if start.shape != end.shape:
            raise ValueError("interval starts and ends differ in length")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    # construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Intervals":
        return cls(np.zeros(0), np.zeros(0))

    @classmethod
    def from_pairs(cls, start, end) -> "Intervals":
        """Build from possibly unsorted, overlapping pairs: sorts, drops empty ones, merges."""
        start = np.asarray(start, dtype=np.float64).reshape(-1)
        end = np.asarray(end, dtype=np.float64).reshape(-1)
        keep = end > start
        start, end = start[keep], end[keep]
        order = np.argsort(start, kind="stable")
        start, end = start[order], end[order]
        if len(start) == 0:
            return cls.empty()
        merged_s, merged_e = [start[0]], [end[0]]
        for s, e in zip(start[1:], end[1:]):
            if s <= merged_e[-1]:
                merged_e[-1] = max(merged_e[-1], e)
            else:
                merged_s.append(s)
                merged_e.append(e)
        return cls(np.array(merged_s), np.array(merged_e))

    # queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.start)

    def __iter__(self):
        return iter(zip(self.start.tolist(), self.end.tolist()))

    @property
    def duration(self) -> float:
        return float(np.sum(self.end - self.start))

    def contains(self, t: np.ndarray) -> np.ndarray:
        """Boolean mask: which times fall inside one of the intervals."""
        t = np.asarray(t, dtype=np.float64)
        if len(self) == 0:
            return np.zeros(t.shape, dtype=bool)
        i = np.searchsorted(self.start, t, side="right") - 1
        inside = i >= 0
        i = np.clip(i, 0, None)
        return inside & (t < self.end[i])

    # set algebra --------------------------------------------------------------------
    def union(self, other: "Intervals") -> "Intervals":
        return Intervals.from_pairs(
            np.concatenate([self.start, other.start]), np.concatenate([self.end, other.end])
        )

    def intersect(self, other: "Intervals") -> "Intervals":
        out_s, out_e = [], []
        i = j = 0
        while i < len(self) and j < len(other):
            s = max(self.start[i], other.start[j])
            e = min(self.end[i], other.end[j])
            if e > s:
                out_s.append(s)
                out_e.append(e)
            if self.end[i] < other.end[j]:
                i += 1
            else:
                j += 1
        return Intervals(np.array(out_s), np.array(out_e))

    def difference(self, other: "Intervals") -> "Intervals":
        """The parts of ``self`` outside ``other``."""
        if len(other) == 0 or len(self) == 0:
            return self
        lo = min(self.start[0], other.start[0]) - 1.0
        hi = max(self.end[-1], other.end[-1]) + 1.0
        complement = Intervals(
            np.concatenate([[lo], other.end]), np.concatenate([other.start, [hi]])
        )
        return self.intersect(Intervals.from_pairs(complement.start, complement.end))

    def widen(self, pad: float) -> "Intervals":
        """Each interval grown by ``pad`` seconds on both sides (merged where they touch)."""
        return Intervals.from_pairs(self.start - pad, self.end + pad)

    def clip(self, t0: float, t1: float) -> "Intervals":
        return self.intersect(Intervals(np.array([t0]), np.array([t1])))

    def shift(self, dt: float) -> "Intervals":
        return Intervals(self.start + dt, self.end + dt)

    def to_dict(self) -> dict:
        return {"start": self.start.tolist(), "end": self.end.tolist()}
