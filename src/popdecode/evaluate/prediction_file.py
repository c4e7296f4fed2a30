"""The file of every prediction ``popdecode evaluate`` makes (HDF5, no pickles).

Layout, one group per (session, readout)::

    /<session id>/<readout>/timestamps    float64 [T]     absolute seconds, session clock
    /<session id>/<readout>/prediction    float32 [T, D]  stitched, in the series' own units
    /<session id>/<readout>/target        float32 [T, D]  the recorded values (NaN if missing)
    /<session id>/<readout>/eval_mask     bool    [T]     counted in R^2

Every behaviour sample inside the split's intervals is there, not only the masked ones, so
a reader can plot whole trials; R^2 is ``r2_score(target[eval_mask], prediction[eval_mask])``.
The root's attributes say which run, split and method made the file; each readout group
carries ``columns`` and ``unit`` of its series. Session ids may contain ``/`` characters, so
group names are the ids with ``/`` replaced by ``|`` and the true id is kept in the group's
``session`` attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from popdecode.utils.atomic import atomic_path


@dataclass
class SessionPredictions:
    session: str
    readout: str
    timestamps: np.ndarray
    prediction: np.ndarray
    target: np.ndarray
    eval_mask: np.ndarray
    columns: list[str]
    unit: str


def write_predictions(path: str | Path, items: list[SessionPredictions], *, attrs: dict[str, str]) -> None:
    """Write ``items`` to ``path`` atomically (see the module docstring for the layout)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            for it in items:
                g = f.require_group(it.session.replace("/", "|"))
                g.attrs["session"] = it.session
                r = g.create_group(it.readout)
                r.create_dataset("timestamps", data=np.asarray(it.timestamps, dtype=np.float64))
                r.create_dataset("prediction", data=np.asarray(it.prediction, dtype=np.float32))
                r.create_dataset("target", data=np.asarray(it.target, dtype=np.float32))
                r.create_dataset("eval_mask", data=np.asarray(it.eval_mask, dtype=bool))
                r.attrs["columns"] = list(it.columns)
                r.attrs["unit"] = it.unit


def read_predictions(path: str | Path) -> list[SessionPredictions]:
    """Everything :func:`write_predictions` wrote, in file order."""
    out = []
    with h5py.File(path, "r") as f:
        for gname in f:
            g = f[gname]
            for readout in g:
                r = g[readout]
                out.append(SessionPredictions(
                    session=str(g.attrs.get("session", gname)), readout=readout,
                    timestamps=r["timestamps"][()], prediction=r["prediction"][()], target=r["target"][()],
                    eval_mask=r["eval_mask"][()], columns=[str(c) for c in r.attrs["columns"]],
                    unit=str(r.attrs["unit"]),
                ))
    return out
