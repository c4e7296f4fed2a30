"""What a running decoder reports: tick counts and latency percentiles, in bounded memory.

A service runs for hours, so latencies are kept in a ring of the most recent ones (enough for
a stable p99) plus the all-time count and maximum; the state line and the end-of-run table
read from it.
"""

from __future__ import annotations

import numpy as np


class LatencyRing:
    """The last ``size`` values of one latency (seconds), with the all-time count and maximum."""

    def __init__(self, *, size: int = 100_000):
        self._values = np.empty(int(size), dtype=np.float64)
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        self._values[self.count % len(self._values)] = value
        self.count += 1
        self.max = max(self.max, value)

    def values(self) -> np.ndarray:
        return self._values[: min(self.count, len(self._values))]

    def percentile(self, q: float) -> float:
        v = self.values()
        return float(np.percentile(v, q)) if len(v) else float("nan")


class ServeStats:
    """Counters and latencies of a serving loop (see :class:`~popdecode.serve.loop.ServeLoop`).

    ``latency``: from the arrival of the newest spike a tick received to the push of the
    tick's decoded sample. ``model``: time inside ``decode_window`` alone. ``decode``: the
    whole :meth:`OnlineDecoder.decode` (tokens and the model).
    """

    def __init__(self):
        self.ticks = 0  # decoded and pushed
        self.missed = 0  # skipped because the loop was late
        self.waiting = 0  # ticks spent without an input stream
        self.latency = LatencyRing()
        self.model = LatencyRing()
        self.decode = LatencyRing()

    def table(self) -> list[tuple[str, float, float, float]]:
        """Rows (name, p50, p99, max) in milliseconds."""
        return [(name, ring.percentile(50) * 1e3, ring.percentile(99) * 1e3, ring.max * 1e3)
                for name, ring in (("arrival -> push", self.latency), ("decode", self.decode),
                                   ("decode_window alone", self.model))]

    def format_table(self) -> str:
        lines = [f"{'latency (ms)':<22}{'p50':>9}{'p99':>9}{'max':>9}"]
        lines += [f"{name:<22}{p50:>9.2f}{p99:>9.2f}{mx:>9.2f}" for name, p50, p99, mx in self.table()]
        lines.append(f"ticks {self.ticks}, missed {self.missed}, waiting for input {self.waiting}")
        return "\n".join(lines)
