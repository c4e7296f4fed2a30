"""One session as one HDF5 file: the layout, the writer and the reader of its small parts.

Layout of ``sessions/<name>.h5`` in a store (every array little-endian)::

    /                      attrs: format="popdecode-session", version=1, id,
                                  metadata (JSON object), targets (JSON list)
    /spikes/times          float64 [N]     sorted spike times, seconds
    /spikes/units          int16|int32 [N] row of /units/ids
    /spikes/index          int64 [K+1]     coarse index, attrs origin, step (see below)
    /units/ids             utf-8 strings [U]
    /units/info/<column>   one value per unit (brain area, electrode, ...)
    /series/<name>/timestamps  float64 [T]
    /series/<name>/values      float32 [T, D]   NaN = missing sample
    /series/<name>/index       int64 [K+1]      coarse index of the timestamps
                               attrs columns (JSON list), unit
    /trials/<column>       one value per trial: start, stop, and every other column
    /intervals/<name>/start, /intervals/<name>/end   named interval sets (train, reach, ...)
    /domain/start, /domain/end                       observation intervals

The big arrays (spike times and units, series timestamps and values) are written
*contiguous and uncompressed*. That choice is what makes window reads cheap: the reader
asks HDF5 once for each array's byte offset in the file and from then on sees the array
through a read-only memory map (:func:`map_arrays`), so reading a window is a NumPy slice
and the operating system pages in only the bytes of that window. Any HDF5 tool still reads
the files normally.

The coarse index makes the slice bounds cheap to find: ``index[k]`` is the position of the
first time >= ``origin + k * step`` (step 1 s), so the times of a window [t0, t1) all lie
between ``index[floor((t0 - origin) / step)]`` and ``index[ceil((t1 - origin) / step)]``
and a binary search inside that short stretch finishes the job.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path

import h5py
import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session

FORMAT = "popdecode-session"
VERSION = 1
INDEX_STEP = 1.0  # seconds between coarse-index entries

_STR = h5py.string_dtype("utf-8")


# ------------------------------------------------------------------------------------
# coarse index
# ------------------------------------------------------------------------------------
def build_index(times: np.ndarray, step: float = INDEX_STEP) -> tuple[np.ndarray, float]:
    """Offsets of the first time >= origin + k * step, for k = 0 .. K; and the origin."""
    if len(times) == 0:
        return np.zeros(1, dtype=np.int64), 0.0
    origin = float(np.floor(times[0]))
    k = int(np.ceil((times[-1] - origin) / step)) + 2
    edges = origin + step * np.arange(k)
    index = np.searchsorted(times, edges, side="left").astype(np.int64)
    return index, origin


def index_bounds(index: np.ndarray, origin: float, step: float, t0: float, t1: float) -> tuple[int, int]:
    """A stretch [lo, hi) of positions that holds every time in [t0, t1).

    One entry of slack on each side absorbs floating-point rounding at the edges.
    """
    last = len(index) - 1
    k0 = math.floor((t0 - origin) / step) - 1
    k1 = math.ceil((t1 - origin) / step) + 1
    lo = 0 if k0 <= 0 else int(index[min(k0, last)])
    hi = int(index[-1]) if k1 >= last else int(index[max(k1, 0)])
    return lo, hi


# ------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------
def _put_column(group: h5py.Group, name: str, values) -> None:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        group.create_dataset(name, data=np.array([str(v) for v in arr.reshape(-1)], dtype=object), dtype=_STR)
    elif arr.dtype.kind == "b":
        group.create_dataset(name, data=arr.astype(np.bool_))
    else:
        group.create_dataset(name, data=arr)


def _put_intervals(group: h5py.Group, iv: Intervals) -> None:
    group.create_dataset("start", data=iv.start.astype("<f8"))
    group.create_dataset("end", data=iv.end.astype("<f8"))


def write_session_file(path: str | os.PathLike, session: Session) -> None:
    """Write ``session`` to ``path`` in the layout above (not atomic: callers rename)."""
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["id"] = session.id
        f.attrs["metadata"] = json.dumps({k: str(v) for k, v in session.metadata.items()})
        f.attrs["targets"] = json.dumps(list(session.targets))

        sp = f.create_group("spikes")
        sp.create_dataset("times", data=session.spike_times.astype("<f8"))
        unit_dtype = "<i2" if session.num_units < 2**15 else "<i4"
        sp.create_dataset("units", data=session.spike_units.astype(unit_dtype))
        index, origin = build_index(session.spike_times)
        d = sp.create_dataset("index", data=index)
        d.attrs["origin"], d.attrs["step"] = origin, INDEX_STEP

        un = f.create_group("units")
        un.create_dataset("ids", data=np.array(session.unit_ids, dtype=object), dtype=_STR)
        info = un.create_group("info")
        for col, vals in session.unit_info.items():
            _put_column(info, col, vals)

        se = f.create_group("series")
        for name, s in session.series.items():
            g = se.create_group(name)
            g.attrs["columns"] = json.dumps(list(s.columns))
            g.attrs["unit"] = s.unit
            g.create_dataset("timestamps", data=s.timestamps.astype("<f8"))
            g.create_dataset("values", data=np.ascontiguousarray(s.values, dtype="<f4"))
            index, origin = build_index(s.timestamps)
            d = g.create_dataset("index", data=index)
            d.attrs["origin"], d.attrs["step"] = origin, INDEX_STEP

        if session.trials is not None:
            tr = f.create_group("trials")
            for col, vals in session.trials.items():
                _put_column(tr, col, vals)
        iv = f.create_group("intervals")
        for name, intervals in session.intervals.items():
            _put_intervals(iv.create_group(name), intervals)
        _put_intervals(f.create_group("domain"), session.domain)


# ------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------
def _column(d: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(d.dtype) is not None:
        return d.asstr()[()].astype(str) if d.shape != () else np.array(d.asstr()[()])
    return d[()]


def _intervals(g: h5py.Group) -> Intervals:
    return Intervals(g["start"][()], g["end"][()])


def _locate(d: h5py.Dataset) -> dict:
    """Where an array lives in the file, so that it can be memory-mapped later."""
    return {
        "offset": d.id.get_offset() if d.size else None,
        "dtype": d.dtype.str,
        "shape": d.shape,
        "path": d.name,
    }


def read_header(path: str | os.PathLike) -> dict:
    """Everything small in a session file, plus where its big arrays live.

    Reads unit ids, trials, intervals, domain, metadata and the coarse indices; the spike
    and behaviour arrays are only located, not read.
    """
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a popdecode session file")
        head = {
            "id": str(f.attrs["id"]),
            "metadata": json.loads(f.attrs["metadata"]),
            "targets": json.loads(f.attrs["targets"]),
            "unit_ids": [str(u) for u in f["units/ids"].asstr()[()]],
            "unit_info": {k: _column(v) for k, v in f["units/info"].items()},
            "trials": {k: _column(v) for k, v in f["trials"].items()} if "trials" in f else None,
            "intervals": {k: _intervals(g) for k, g in f["intervals"].items()},
            "domain": _intervals(f["domain"]),
            "arrays": {
                "spike_times": _locate(f["spikes/times"]),
                "spike_units": _locate(f["spikes/units"]),
            },
            "index": {"spikes": _read_index(f["spikes/index"])},
            "series": {},
        }
        for name, g in f["series"].items():
            head["series"][name] = {
                "columns": json.loads(g.attrs["columns"]),
                "unit": str(g.attrs["unit"]),
                "shape": g["values"].shape,
            }
            head["arrays"][f"{name}/timestamps"] = _locate(g["timestamps"])
            head["arrays"][f"{name}/values"] = _locate(g["values"])
            head["index"][name] = _read_index(g["index"])
    return head


def _read_index(d: h5py.Dataset) -> tuple[np.ndarray, float, float]:
    return d[()], float(d.attrs["origin"]), float(d.attrs["step"])


def map_arrays(path: str | os.PathLike, arrays: dict) -> dict[str, np.ndarray]:
    """Read-only NumPy views of a session file's big arrays, through one memory map.

    Arrays that HDF5 did not store contiguously (a file written by another tool) are
    read into memory instead.
    """
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    fallback = []
    for key, loc in arrays.items():
        shape, dtype = tuple(loc["shape"]), np.dtype(loc["dtype"])
        count = int(np.prod(shape)) if shape else 1
        if count == 0:
            out[key] = np.zeros(shape, dtype=dtype)
        elif loc["offset"] is None:
            fallback.append(key)
        else:
            out[key] = np.frombuffer(mm, dtype=dtype, count=count, offset=loc["offset"]).reshape(shape)
    if fallback:
        with h5py.File(path, "r") as f:
            for key in fallback:
                out[key] = f[arrays[key]["path"]][()]
    return out


def read_session_file(path: str | Path) -> Session:
    """The whole session file as an in-memory :class:`Session`."""
    head = read_header(path)
    arrays = {k: np.array(v) for k, v in map_arrays(path, head["arrays"]).items()}
    series = {
        name: Series(arrays[f"{name}/timestamps"], arrays[f"{name}/values"], columns=info["columns"], unit=info["unit"])
        for name, info in head["series"].items()
    }
    return Session(
        id=head["id"],
        spike_times=arrays["spike_times"],
        spike_units=arrays["spike_units"],
        unit_ids=head["unit_ids"],
        series=series,
        targets=head["targets"],
        trials=head["trials"],
        intervals=head["intervals"],
        domain=head["domain"],
        unit_info=head["unit_info"],
        metadata=head["metadata"],
    )
