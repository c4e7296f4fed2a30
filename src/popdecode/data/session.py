"""One recording session, in memory, and the window that every later stage reads from it.

A :class:`Session` holds:

- spikes: ``spike_times`` (float64 seconds, sorted) and ``spike_units`` (index into units);
- units: ``unit_ids`` (unique within the session) and optional per-unit columns in
  ``unit_info`` (brain area, electrode, ...);
- behaviour: any number of named :class:`Series` (timestamps, values [T, D], column names,
  physical unit); ``targets`` names the ones a model decodes (its "readouts");
- trials: a table of columns (``start``, ``stop`` and any others) or ``None``;
- intervals: named :class:`~popdecode.data.intervals.Intervals` (``train``/``valid``/``test``
  splits, movement phases such as ``hold``/``reach``/``return``, ``outlier`` segments and
  the evaluation mask ``eval``);
- ``domain``: the observation intervals, and ``metadata`` (subject, species, task, source).

The on-disk store (:mod:`popdecode.data.store`) returns objects with the same attributes
and the same :meth:`Session.window` method, reading only the requested window from disk, so
that every consumer (tokenizer, baselines, evaluation) works with either.

Interval-set names with a meaning elsewhere in the package:

``train``, ``valid``, ``test``
    the split (see :mod:`popdecode.data.splits`).
``eval``
    where R^2 is computed (e.g. the reach period); absent means everywhere.
``hold``, ``reach``, ``return``, ``outlier``
    movement phases that set the per-timestamp loss weights during training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from popdecode.data.intervals import Intervals

SPLITS = ("train", "valid", "test")


def sample_index(recorded: np.ndarray, timestamps: np.ndarray, *, tolerance: float = 1e-6) -> np.ndarray:
    """Index into the sorted ``recorded`` times of the sample at each of ``timestamps``: the
    nearest one, if it lies within ``tolerance`` seconds, else -1. For times that went through
    window-relative arithmetic (stitched predictions) and so differ in the last digits."""
    ts = np.asarray(recorded, dtype=np.float64).reshape(-1)
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(ts) == 0:
        return np.full(len(t), -1, dtype=np.int64)
    right = np.minimum(np.searchsorted(ts, t), len(ts) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(ts[left] - t) <= np.abs(ts[right] - t), left, right)
    return np.where(np.abs(ts[nearest] - t) <= tolerance, nearest, -1).astype(np.int64)


def values_at(series, timestamps: np.ndarray) -> np.ndarray:
    """float32 [len(timestamps), D]: the recorded values of ``series`` at ``timestamps`` (the
    sample :func:`sample_index` matches), NaN rows where no sample lies within its tolerance."""
    index = sample_index(series.timestamps, timestamps)
    values = np.asarray(series.values, dtype=np.float32)[np.maximum(index, 0)]
    return np.where((index >= 0)[:, None], values, np.float32(np.nan))


def interpolate_at(series, timestamps: np.ndarray) -> np.ndarray:
    """float32 [len(timestamps), D]: ``series`` linearly interpolated at ``timestamps``; NaN
    outside its recorded span and next to a missing sample."""
    ts = np.asarray(series.timestamps, dtype=np.float64)
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    values = np.asarray(series.values, dtype=np.float64)
    out = np.full((len(t), values.shape[1]), np.nan, dtype=np.float32)
    if len(ts) == 0:
        return out
    inside = (t >= ts[0]) & (t <= ts[-1])
    for d in range(values.shape[1]):
        out[inside, d] = np.interp(t[inside], ts, values[:, d])
    return out


@dataclass
class Series:
    """A behaviour time series: ``values[i]`` was sampled at ``timestamps[i]`` seconds."""

    timestamps: np.ndarray  # float64 [T], sorted
    values: np.ndarray  # float32 [T, D]; NaN marks a missing sample
    columns: list[str] = field(default_factory=list)
    unit: str = "a.u."

    def __post_init__(self):
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        self.values = values
        if len(self.timestamps) != len(self.values):
            raise ValueError("series timestamps and values differ in length")
        if not self.columns:
            self.columns = [str(i) for i in range(self.values.shape[1])]

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


@dataclass
class Window:
    """What a model or decoder sees of one session between ``start`` and ``end``.

    Times are relative to ``start`` (the window's own clock starts at 0).
    """

    session_id: str
    start: float
    end: float
    spike_times: np.ndarray  # float64 [N], relative to start, sorted
    spike_units: np.ndarray  # int64 [N], index into the session's units
    series: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (timestamps rel., values [T, D])

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass
class Session:
    id: str
    spike_times: np.ndarray
    spike_units: np.ndarray
    unit_ids: list[str]
    series: dict[str, Series] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    trials: dict[str, np.ndarray] | None = None
    intervals: dict[str, Intervals] = field(default_factory=dict)
    domain: Intervals | None = None
    unit_info: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.spike_times = np.asarray(self.spike_times, dtype=np.float64).reshape(-1)
        self.spike_units = np.asarray(self.spike_units, dtype=np.int64).reshape(-1)
        self.unit_ids = [str(u) for u in self.unit_ids]
        if len(self.spike_times) != len(self.spike_units):
            raise ValueError("spike_times and spike_units differ in length")
        if self.domain is None:
            self.domain = self._default_domain()

    def _default_domain(self) -> Intervals:
        starts, ends = [], []
        if len(self.spike_times):
            starts.append(self.spike_times[0])
            ends.append(self.spike_times[-1])
        for s in self.series.values():
            if len(s.timestamps):
                starts.append(s.timestamps[0])
                ends.append(s.timestamps[-1])
        if not starts:
            return Intervals.empty()
        return Intervals(np.array([min(starts)]), np.array([max(ends) + 1e-9]))

    # summary ------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    @property
    def num_spikes(self) -> int:
        return len(self.spike_times)

    @property
    def start(self) -> float:
        return float(self.domain.start[0]) if len(self.domain) else 0.0

    @property
    def end(self) -> float:
        return float(self.domain.end[-1]) if len(self.domain) else 0.0

    @property
    def duration(self) -> float:
        return self.domain.duration

    def split(self, name: str) -> Intervals:
        """The ``train``, ``valid`` or ``test`` intervals (empty if the session has none)."""
        return self.intervals.get(name, Intervals.empty())

    # reading ------------------------------------------------------------------------
    def window(self, t0: float, t1: float, series: list[str] | None = None) -> Window:
        """Spikes and behaviour samples with t0 <= t < t1, times relative to ``t0``.

        ``series`` limits which behaviour series are returned (default: all).
        """
        i0, i1 = np.searchsorted(self.spike_times, [t0, t1], side="left")
        names = self.series.keys() if series is None else series
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in names:
            s = self.series[name]
            j0, j1 = np.searchsorted(s.timestamps, [t0, t1], side="left")
            out[name] = (s.timestamps[j0:j1] - t0, s.values[j0:j1])
        return Window(
            session_id=self.id,
            start=float(t0),
            end=float(t1),
            spike_times=self.spike_times[i0:i1] - t0,
            spike_units=self.spike_units[i0:i1],
            series=out,
        )

    def load(self) -> "Session":
        """The whole session in memory (a stored session reads everything; this is itself)."""
        return self
