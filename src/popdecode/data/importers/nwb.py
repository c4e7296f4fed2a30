"""NWB files (DANDI, Neural Latents Benchmark, our real recordings), read with pynwb.

What becomes what:

``units``
    ``spike_times`` -> spikes; the table ids -> unit ids; ``obs_intervals`` (union over
    units) -> the session's domain; scalar columns (and the electrodes' ``location``, as
    ``brain_area``) -> per-unit columns.
behaviour
    every ``TimeSeries`` / ``SpatialSeries`` anywhere under ``processing`` or
    ``acquisition``, named by its own name (``processing/behavior/hand_vel`` ->
    ``hand_vel``; ``processing/behavior/Position/position`` -> ``position``). Raw
    electrical and image series are left out. Data are scaled by the series'
    ``conversion`` and ``offset`` into its physical ``unit``. Column names come from a
    ``comments`` field reading ``columns=[x,y]`` when there is one.
``trials``
    every column; ``start_time``/``stop_time`` become ``start``/``stop``.
other ``intervals`` tables
    each becomes a named interval set (``epochs`` -> ``epochs``, plus one set per tag when
    the table has ``tags``; ``invalid_times`` -> ``outlier``).

The session id is the file name without its extension, which keeps ids readable and
distinct (the NWB ``identifier`` is often a UUID); the identifier and the NWB
``session_id`` are kept in the metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from popdecode.data.importers.common import as_str, choose_targets, columns_for, session_id_for
from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.errors import UserError

# Series types that are recordings rather than behaviour.
_SKIP_TYPES = ("ElectricalSeries", "ImageSeries", "TwoPhotonSeries", "OnePhotonSeries", "ImageMaskSeries")
_MAX_BEHAVIOUR_DIM = 64
_MAX_OTHER_VALUES = 20_000_000


def _open(path: Path):
    import pynwb

    try:
        io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
        return io, io.read()
    except Exception as err:  # pynwb raises many types for a malformed file
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read {path} as NWB: {reason}; check that the file is a complete NWB 2 file") from None


def _ragged(table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, row of each value) of a ragged column such as ``spike_times``."""
    index = table[col]
    ends = np.asarray(index.data[:], dtype=np.int64)
    flat = np.asarray(index.target.data[:])
    rows = np.repeat(np.arange(len(ends)), np.diff(np.concatenate([[0], ends])))
    return flat, rows


def _units(nwb, path: Path):
    units = nwb.units
    if units is None or "spike_times" not in units.colnames:
        raise UserError(f"{path} has no units table with spike_times; popdecode needs sorted spike times")
    times, rows = _ragged(units, "spike_times")
    ids = [str(i) for i in units.id.data[:]]
    domain = None
    if "obs_intervals" in units.colnames:
        iv, _ = _ragged(units, "obs_intervals")
        iv = np.asarray(iv, dtype=np.float64).reshape(-1, 2)
        if len(iv):
            domain = Intervals.from_pairs(iv[:, 0], iv[:, 1])
    info: dict[str, np.ndarray] = {}
    for col in units.colnames:
        if col in ("spike_times", "obs_intervals") or col.startswith("waveform"):
            continue
        column = units[col]
        kind = type(column).__name__
        if kind == "VectorIndex":
            continue
        if kind == "DynamicTableRegion":  # electrodes
            idx = np.asarray(column.data[:])
            if idx.ndim == 1:
                info["electrode"] = idx
                table = column.table
                if "location" in table.colnames:
                    loc = np.asarray([as_str(v) for v in table["location"].data[:]])
                    info["brain_area"] = loc[idx]
            continue
        data = np.asarray(column.data[:])
        if data.ndim == 1 and len(data) == len(ids):
            info[col] = np.array([as_str(v) for v in data]) if data.dtype.kind in "OSU" else data
    return times, rows, ids, domain, info


def _columns(ts, dim: int) -> list[str]:
    m = re.search(r"columns\s*=\s*\[([^\]]*)\]", ts.comments or "")
    if m:
        cols = [c.strip().strip("'\"") for c in m.group(1).split(",")]
        if len(cols) == dim:
            return cols
    return columns_for(dim)


def _behaviour_candidates(nwb) -> dict:
    """Every behaviour series under processing or acquisition, by name (data not read)."""
    from pynwb import TimeSeries

    found: dict = {}

    def visit(obj, parent_name: str):
        if isinstance(obj, TimeSeries):
            if type(obj).__name__ in _SKIP_TYPES or obj.data is None:
                return
            shape = getattr(obj.data, "shape", None)
            if shape is None or len(shape) > 2 or (len(shape) == 2 and shape[1] > _MAX_BEHAVIOUR_DIM):
                return
            name = obj.name if obj.name not in found else f"{parent_name}_{obj.name}"
            found[name] = obj
            return
        for child in getattr(obj, "children", []):
            visit(child, obj.name)

    for module in nwb.processing.values():
        visit(module, module.name)
    for obj in nwb.acquisition.values():
        visit(obj, "acquisition")
    return found


def _series(ts) -> Series:
    values = np.asarray(ts.data[:], dtype=np.float64)
    conversion = float(getattr(ts, "conversion", 1.0) or 1.0)
    offset = float(getattr(ts, "offset", 0.0) or 0.0)
    if conversion != 1.0 or offset != 0.0:
        values = values * conversion + offset
    values = values.reshape(len(values), -1)
    timestamps = np.asarray(ts.get_timestamps(), dtype=np.float64)
    return Series(timestamps, values.astype(np.float32), columns=_columns(ts, values.shape[1]), unit=str(ts.unit))


def _table_columns(table, rename: dict[str, str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    n = len(table.id.data[:])
    for col in table.colnames:
        column = table[col]
        if type(column).__name__ in ("VectorIndex", "DynamicTableRegion"):
            continue
        data = np.asarray(column.data[:])
        if len(data) != n:
            continue
        if data.dtype.kind in "OSU":
            data = np.array([as_str(v) for v in data.reshape(-1)]).reshape(data.shape)
        out[rename.get(col, col)] = data
    return out


def _interval_sets(nwb) -> tuple[dict[str, np.ndarray] | None, dict[str, Intervals]]:
    trials = None
    sets: dict[str, Intervals] = {}
    for name, table in (nwb.intervals or {}).items():
        if "start_time" not in table.colnames or "stop_time" not in table.colnames:
            continue
        start = np.asarray(table["start_time"].data[:], dtype=np.float64)
        stop = np.asarray(table["stop_time"].data[:], dtype=np.float64)
        if name == "trials":
            trials = _table_columns(table, {"start_time": "start", "stop_time": "stop"})
            continue
        sets["outlier" if name == "invalid_times" else name] = Intervals.from_pairs(start, stop)
        if "tags" in table.colnames:
            tags, rows = _ragged(table, "tags")
            for tag in sorted({as_str(t) for t in tags}):
                hit = np.unique(rows[np.array([as_str(t) == tag for t in tags])])
                sets.setdefault(tag, Intervals.from_pairs(start[hit], stop[hit]))
    return trials, sets


def load_nwb(path: str | Path, targets: list[str] | None = None) -> Session:
    """One NWB file as a :class:`Session` (not yet checked by ``clean_session``)."""
    path = Path(path)
    io, nwb = _open(path)
    try:
        candidates = _behaviour_candidates(nwb)
        chosen = choose_targets(path, list(candidates), targets)
        times, rows, ids, domain, info = _units(nwb, path)
        # A long analog channel filed as a plain TimeSeries is kept only when it is a target.
        series = {
            name: _series(ts) for name, ts in candidates.items()
            if name in chosen or np.prod(ts.data.shape) <= _MAX_OTHER_VALUES
        }
        trials, sets = _interval_sets(nwb)
        subject = nwb.subject
        metadata = {
            "format": "nwb",
            "source_file": str(path.resolve()),
            "identifier": str(nwb.identifier),
            "nwb_session_id": str(nwb.session_id or ""),
            "subject": str(getattr(subject, "subject_id", "") or ""),
            "species": str(getattr(subject, "species", "") or ""),
            "task": str(nwb.session_description or ""),
        }
    except UserError:
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read {path} as NWB: {reason}; check that the file is a complete NWB 2 file") from None
    finally:
        io.close()
    # NWB keeps spikes unit by unit; the session wants them merged in time order.
    times = np.asarray(times, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    return Session(
        id=session_id_for(path),
        spike_times=times[order],
        spike_units=rows[order],
        unit_ids=ids,
        series=series,
        targets=chosen,
        trials=trials,
        intervals=sets,
        domain=domain,
        unit_info=info,
        metadata=metadata,
    )
