"""A plain NumPy ``.npz`` layout for recordings in any other format.

Write one ``.npz`` per session with ``np.savez(path, **arrays)``; keys with dots are
ordinary ``np.savez`` keyword names passed through a dict. Strings must be NumPy string
arrays (``np.array(ids, dtype=str)``), never Python objects: the file is read with
``allow_pickle=False``.

Required::

    spike_times                 float  [N]     spike times in seconds (any order)
    spike_units                 int    [N]     row of unit_ids for each spike
    unit_ids                    str    [U]     unique within the session
    behavior.<name>.timestamps  float  [T]     one or more behaviour series <name>
    behavior.<name>.values      float  [T, D]  (or [T]); NaN marks a missing sample

Optional::

    behavior.<name>.columns     str    [D]     column names (default x, y, z / 0, 1, ...)
    behavior.<name>.unit        str    []      physical unit (default "a.u.")
    trials.start, trials.stop   float  [K]     trial table; any other trials.<column> [K]
                                               is kept (a column ``split`` holding
                                               train/valid/test fixes the split)
    intervals.<name>.start      float  [M]     named interval sets (hold, reach, return,
    intervals.<name>.end        float  [M]     outlier, eval, train, valid, test, ...)
    domain.start, domain.end    float  [M]     observation intervals (default: the span
                                               of spikes and behaviour)
    subject, species, task      str    []      metadata

The session id is the file name without ``.npz``. Example::

    np.savez("monkey_a_day1.npz", **{
        "spike_times": t, "spike_units": u, "unit_ids": np.array(ids, dtype=str),
        "behavior.hand_vel.timestamps": ts, "behavior.hand_vel.values": vel,
        "trials.start": starts, "trials.stop": stops,
    })
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from popdecode.data.importers.common import choose_targets, columns_for, session_id_for
from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.errors import UserError

REQUIRED = ("spike_times", "spike_units", "unit_ids")


def load_npz(path: str | Path, targets: list[str] | None = None) -> Session:
    """One ``.npz`` recording (layout above) as a :class:`Session` (not yet cleaned)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise UserError(
                f"{path} stores Python objects; save strings as NumPy string arrays (np.array(ids, dtype=str))"
            ) from None
        raise UserError(f"cannot read {path}: not a complete .npz file (corrupt or truncated); re-save it") from None
    except (OSError, zipfile.BadZipFile, EOFError):
        raise UserError(f"cannot read {path}: not a complete .npz file (corrupt or truncated); re-save it") from None

    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; see docs/data_formats.md for the .npz layout")

    series: dict[str, Series] = {}
    names = sorted({k.split(".")[1] for k in arrays if k.startswith("behavior.") and k.count(".") >= 2})
    for name in names:
        ts, vals = arrays.get(f"behavior.{name}.timestamps"), arrays.get(f"behavior.{name}.values")
        if ts is None or vals is None:
            raise UserError(f"{path}: series {name} needs both behavior.{name}.timestamps and behavior.{name}.values")
        vals = np.asarray(vals, dtype=np.float32).reshape(len(vals), -1)
        cols = arrays.get(f"behavior.{name}.columns")
        unit = arrays.get(f"behavior.{name}.unit")
        series[name] = Series(
            ts,
            vals,
            columns=[str(c) for c in cols] if cols is not None else columns_for(vals.shape[1]),
            unit=str(unit) if unit is not None else "a.u.",
        )
    chosen = choose_targets(path, list(series), targets)

    trials = None
    if "trials.start" in arrays and "trials.stop" in arrays:
        trials = {k[len("trials."):]: arrays[k] for k in arrays if k.startswith("trials.")}
    sets = {}
    for key in arrays:
        if key.startswith("intervals.") and key.endswith(".start"):
            name = key[len("intervals."): -len(".start")]
            end = arrays.get(f"intervals.{name}.end")
            if end is None:
                raise UserError(f"{path}: interval set {name} needs both intervals.{name}.start and intervals.{name}.end")
            sets[name] = Intervals.from_pairs(arrays[key], end)
    domain = None
    if "domain.start" in arrays and "domain.end" in arrays:
        domain = Intervals.from_pairs(arrays["domain.start"], arrays["domain.end"])
    metadata = {"format": "npz", "source_file": str(path.resolve())}
    for key in ("subject", "species", "task"):
        if key in arrays:
            metadata[key] = str(arrays[key])

    return Session(
        id=session_id_for(path),
        spike_times=np.asarray(arrays["spike_times"], dtype=np.float64),
        spike_units=np.asarray(arrays["spike_units"], dtype=np.int64),
        unit_ids=[str(u) for u in arrays["unit_ids"]],
        series=series,
        targets=chosen,
        trials=trials,
        intervals=sets,
        domain=domain,
        unit_info={},
        metadata=metadata,
    )
