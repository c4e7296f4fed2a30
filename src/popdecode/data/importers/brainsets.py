"""Session files written by brainsets / temporaldata (``Data.to_hdf5``), read with h5py.

Such a file is a tree of HDF5 groups whose ``object`` attribute names the temporaldata
type. What a brainsets-prepared session holds, and what it becomes here:

``spikes`` (IrregularTimeSeries: ``timestamps``, ``unit_index``)
    the spikes.
``units`` (ArrayDict: ``id`` and other per-unit columns)
    unit ids and per-unit columns.
any other IrregularTimeSeries / RegularTimeSeries, e.g. ``cursor`` (``pos``, ``vel``, ``acc``)
    one behaviour series per array, named ``<group>_<array>``: ``cursor_vel``,
    ``hand_vel``, ``finger_pos``. Regular series get timestamps from their domain start
    and ``sampling_rate``.
``trials`` (Interval: ``start``, ``end`` and other columns such as ``is_valid``)
    the trials table (``end`` becomes ``stop``).
``train_domain`` / ``valid_domain`` / ``test_domain``
    the split, kept as the ``train`` / ``valid`` / ``test`` interval sets.
``movement_phases`` (Data of Intervals ``hold_period``, ``reach_period``, ``return_period``,
``random_period``, ``invalid``)
    interval sets ``hold``, ``reach``, ``return``, ``random``, ``invalid``.
``*outlier_segments``
    the ``outlier`` interval set.
``domain``
    the observation intervals.
``subject``, ``session``, ``brainset`` (Data with attributes)
    metadata.

When the file marks no ``eval`` set, the evaluation mask follows the POYO convention: the
reach period when there is one (center-out), else the random-target period.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from popdecode.data.importers.common import as_str, choose_targets, columns_for, session_id_for
from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.errors import UserError

_SPLIT_NAMES = {"train_domain": "train", "valid_domain": "valid", "test_domain": "test"}
_TIME_SERIES = ("IrregularTimeSeries", "RegularTimeSeries")


def is_temporaldata(f: h5py.File) -> bool:
    return as_str(f.attrs.get("object", "")) == "Data"


def _obj(node) -> str:
    return as_str(node.attrs.get("object", ""))


def _array(d: h5py.Dataset) -> np.ndarray:
    data = d[()]
    if isinstance(data, np.ndarray) and data.dtype.kind in "OS":
        data = np.array([as_str(v) for v in data.reshape(-1)]).reshape(data.shape)
    return data


def _interval(g: h5py.Group) -> Intervals:
    return Intervals.from_pairs(g["start"][()], g["end"][()])


def _set_name(name: str) -> str:
    if name.endswith("outlier_segments"):
        return "outlier"
    return name[: -len("_period")] if name.endswith("_period") else name


def _metadata_key(group: str, key: str) -> str:
    """subject.id -> "subject", subject.species -> "species", session.task -> "session_task"."""
    if key == "id":
        return group
    return key if key == "species" else f"{group}_{key}"


def _series_in(name: str, g: h5py.Group) -> dict[str, Series]:
    """One Series per numeric array of a time-series group."""
    if _obj(g) == "RegularTimeSeries":
        rate = float(g.attrs["sampling_rate"])
        t0 = float(g["domain/start"][0]) if "domain" in g and len(g["domain/start"]) else 0.0
        n = next((d.shape[0] for d in g.values() if isinstance(d, h5py.Dataset) and d.ndim), 0)
        timestamps = t0 + np.arange(n) / rate
    else:
        timestamps = g["timestamps"][()]
    out = {}
    for key, d in g.items():
        if not isinstance(d, h5py.Dataset) or key == "timestamps" or key.startswith("timestamp_indices"):
            continue
        if d.ndim not in (1, 2) or d.shape[0] != len(timestamps) or d.dtype.kind not in "fiub":
            continue
        values = d[()].astype(np.float32).reshape(len(timestamps), -1)
        out[f"{name}_{key}"] = Series(timestamps, values, columns=columns_for(values.shape[1]), unit="a.u.")
    return out


def load_temporaldata(path: str | Path, targets: list[str] | None = None) -> Session:
    """One brainsets / temporaldata session file as a :class:`Session` (not yet cleaned)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UserError(f"cannot read {path}: not a complete HDF5 file (corrupt or truncated); re-export it") from None
    with f:
        if "spikes" not in f or "timestamps" not in f["spikes"] or "unit_index" not in f["spikes"]:
            raise UserError(f"{path} has no spikes (timestamps and unit_index); popdecode needs spike times")
        if "units" not in f or "id" not in f["units"]:
            raise UserError(f"{path} has no units table with an id column; popdecode needs unit ids")

        series: dict[str, Series] = {}
        sets: dict[str, Intervals] = {}
        trials = None
        domain = None
        metadata = {"format": "temporaldata", "source_file": str(path.resolve())}
        for name, node in f.items():
            kind = _obj(node)
            if name == "spikes" or name == "units":
                continue
            if kind in _TIME_SERIES:
                series.update(_series_in(name, node))
            elif kind == "Interval" and name == "trials":
                trials = {("stop" if k == "end" else k): _array(d) for k, d in node.items() if isinstance(d, h5py.Dataset)}
            elif kind == "Interval" and name == "domain":
                domain = _interval(node)
            elif kind == "Interval":
                sets[_SPLIT_NAMES.get(name, _set_name(name))] = _interval(node)
            elif kind == "Data" and isinstance(node, h5py.Group):
                for sub, child in node.items():
                    if _obj(child) == "Interval" and sub != "domain":
                        sets[_set_name(sub)] = _interval(child)
                for key, value in node.attrs.items():
                    if key not in ("object", "absolute_start") and not isinstance(value, np.ndarray):
                        metadata[_metadata_key(name, key)] = as_str(value)
        for key, value in f.attrs.items():
            if key not in ("object", "absolute_start"):
                metadata.setdefault(key, as_str(value))

        chosen = choose_targets(path, list(series), targets)
        unit_ids = [as_str(u) for u in f["units/id"][()]]
        info = {
            k: _array(d)
            for k, d in f["units"].items()
            if k != "id" and isinstance(d, h5py.Dataset) and d.ndim == 1 and len(d) == len(unit_ids)
        }
        times = f["spikes/timestamps"][()]
        units = f["spikes/unit_index"][()]

    if "eval" not in sets:
        for phase in ("reach", "random"):
            if phase in sets:
                sets["eval"] = sets[phase]
                break
    return Session(
        id=session_id_for(path),
        spike_times=times,
        spike_units=units,
        unit_ids=unit_ids,
        series=series,
        targets=chosen,
        trials=trials,
        intervals=sets,
        domain=domain,
        unit_info=info,
        metadata=metadata,
    )
