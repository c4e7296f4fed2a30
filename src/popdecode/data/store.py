"""The store: a dataset directory of sessions that later stages read window by window.

A store is a directory::

    DIR/manifest.json          what is in the store (read when the store is opened)
    DIR/sessions/<name>.h5     one HDF5 file per session (layout: popdecode.data.h5file)

``manifest.json`` lists every session with its file, unit ids, series (dimension, columns,
physical unit, samples), targets, start/end/duration, spike count and split sizes, so a
program can plan a training run (vocabularies, sampling weights) without opening any
session file. Opening a store of 1,000 sessions reads only the manifest.

:class:`StoredSession` has the attributes and methods of an in-memory
:class:`~popdecode.data.session.Session`. Its small parts (intervals, trials, unit columns,
coarse indices) are read from its file on first use; spikes and behaviour are never read
whole: :meth:`StoredSession.window` slices a memory map of the file, so a window costs a
few microseconds and touches only that window's bytes on disk.

Writing is all-or-nothing. :class:`StoreWriter` writes each session to a hidden temporary
file first; only when every session of a batch has been written are the files renamed into
place and the manifest rewritten (atomically). Any error removes the temporaries and leaves
the store byte-for-byte as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import weakref
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np

from popdecode.data.h5file import index_bounds, map_arrays, read_header, read_session_file, write_session_file
from popdecode.data.intervals import Intervals
from popdecode.data.session import SPLITS, Session, Window
from popdecode.data.validate import clean_session, emit_warnings
from popdecode.errors import UserError
from popdecode.utils.atomic import write_json

MANIFEST = "manifest.json"
SESSIONS_DIR = "sessions"
STORE_FORMAT = "popdecode-store"
STORE_VERSION = 1

# How many sessions may hold a memory map at once; the oldest map is released beyond this
# so that a run over thousands of sessions stays under the open-file limit.
MAX_OPEN_SESSIONS = 256


# ------------------------------------------------------------------------------------
# manifest
# ------------------------------------------------------------------------------------
def _empty_manifest() -> dict:
    return {"format": STORE_FORMAT, "version": STORE_VERSION, "sessions": {}}


def read_manifest(store_dir: str | os.PathLike) -> dict:
    """The manifest of a store; :class:`UserError` when ``store_dir`` is not a store."""
    store_dir = Path(store_dir)
    path = store_dir / MANIFEST
    if not store_dir.is_dir():
        raise UserError(f"store {store_dir} does not exist; create it with `popdecode prepare INPUT... --out {store_dir}`")
    if not path.is_file():
        raise UserError(
            f"{store_dir} is not a popdecode store (no {MANIFEST}); create one with `popdecode prepare INPUT... --out DIR`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}; re-create the store with `popdecode prepare`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise UserError(f"{path} is not a popdecode store manifest; re-create the store with `popdecode prepare`")
    return manifest


def _split_sizes(session: Session) -> dict:
    sizes = {}
    split_col = None if session.trials is None else session.trials.get("split")
    for name in SPLITS:
        iv = session.split(name)
        sizes[name] = {"intervals": len(iv), "seconds": round(iv.duration, 6)}
        if split_col is not None:
            sizes[name]["trials"] = int(np.sum(np.asarray(split_col).astype(str) == name))
    return sizes


def manifest_entry(session: Session, file: str) -> dict:
    """What the manifest records about one session."""
    num_trials = 0
    if session.trials:
        num_trials = len(next(iter(session.trials.values())))
    return {
        "file": file,
        "num_units": session.num_units,
        "num_spikes": session.num_spikes,
        "start": session.start,
        "end": session.end,
        "duration": session.duration,
        "unit_ids": list(session.unit_ids),
        "series": {
            name: {"dim": s.dim, "columns": list(s.columns), "unit": s.unit, "samples": len(s.timestamps)}
            for name, s in session.series.items()
        },
        "targets": list(session.targets),
        "num_trials": num_trials,
        "intervals": sorted(session.intervals),
        "splits": _split_sizes(session),
        "metadata": {k: str(v) for k, v in session.metadata.items()},
    }


def _file_name(session_id: str) -> str:
    """A file name for a session id: the id itself when it is safe, else a cleaned id + hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", session_id).lstrip(".") or "session"
    if safe != session_id:
        safe = f"{safe}-{zlib.crc32(session_id.encode()):08x}"
    return f"{SESSIONS_DIR}/{safe}.h5"


# ------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------
class StoreWriter:
    """Add several sessions to a store as one all-or-nothing change.

        with StoreWriter(out_dir, overwrite=False) as writer:
            for session in sessions:
                warnings = writer.add(session)

    Leaving the block normally renames every new file into place and rewrites the
    manifest; an exception leaves the store exactly as it was.
    """

    def __init__(self, store_dir: str | os.PathLike, *, overwrite: bool = False):
        self.root = Path(store_dir)
        self.overwrite = overwrite
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root} is a file, not a store directory; choose another --out")
        if (self.root / MANIFEST).exists():
            self.manifest = read_manifest(self.root)
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise UserError(
                f"{self.root} is not empty and is not a popdecode store; choose a new or empty --out directory"
            )
        else:
            self.manifest = _empty_manifest()
        self._pending: list[tuple[str, Path, Path, dict]] = []  # (id, tmp, final, entry)
        self._made: list[Path] = []  # directories this writer created

    def _mkdir(self, path: Path) -> None:
        for p in reversed([path, *path.parents]):
            if not p.exists():
                p.mkdir()
                self._made.append(p)

    def add(self, session: Session) -> list[str]:
        """Check ``session`` and write it to a temporary file; returns the warning lines."""
        session, notes = clean_session(session)
        sid = session.id
        if any(p[0] == sid for p in self._pending):
            raise UserError(f"session id {sid} appears twice in the input; give the files distinct names")
        if sid in self.manifest["sessions"] and not self.overwrite:
            raise UserError(f"session {sid} is already in the store {self.root}; pass --overwrite to replace it")
        file = self.manifest["sessions"].get(sid, {}).get("file") or _file_name(sid)
        taken = {e["file"] for k, e in self.manifest["sessions"].items() if k != sid} | {str(p[3]["file"]) for p in self._pending}
        if file in taken:  # two ids cleaned to the same name
            file = file[:-3] + f"-{len(taken)}.h5"
        final = self.root / file
        self._mkdir(final.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp)
        self._pending.append((sid, tmp, final, manifest_entry(session, file)))
        write_session_file(tmp, session)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a store is meant to be shared
        return notes

    def commit(self) -> None:
        for sid, tmp, final, entry in self._pending:
            os.replace(tmp, final)
            self.manifest["sessions"][sid] = entry
        write_json(self.root / MANIFEST, self.manifest)
        self._pending.clear()

    def abort(self) -> None:
        for _, tmp, _, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()
        for d in reversed(self._made):
            shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def write_session(store_dir: str | os.PathLike, session: Session, *, overwrite: bool = False) -> None:
    """Add one session to the store at ``store_dir`` (created if absent), atomically.

    The session is checked by :func:`popdecode.data.validate.clean_session` (warnings go to
    stderr). An id already in the store is refused unless ``overwrite``.
    """
    with StoreWriter(store_dir, overwrite=overwrite) as writer:
        emit_warnings(writer.add(session))


# ------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------
class StoredSeries:
    """A behaviour series of a stored session: metadata at hand, arrays read on demand.

    ``timestamps`` and ``values`` are read-only views of the file (memory-mapped).
    """

    def __init__(self, owner: "StoredSession", name: str, info: dict):
        self._owner, self.name = owner, name
        self.columns: list[str] = list(info["columns"])
        self.unit: str = info["unit"]
        self.dim: int = int(info["dim"])
        self.num_samples: int = int(info["samples"])

    @property
    def timestamps(self) -> np.ndarray:
        return self._owner._arrays()[f"{self.name}/timestamps"]

    @property
    def values(self) -> np.ndarray:
        return self._owner._arrays()[f"{self.name}/values"]

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"StoredSeries({self.name!r}, samples={self.num_samples}, dim={self.dim}, unit={self.unit!r})"


# Sessions currently holding a memory map, oldest first (id(session) -> weak reference).
_OPEN_MAPS: "OrderedDict[int, weakref.ref]" = OrderedDict()
_OPEN_PID = -1  # the process that _OPEN_MAPS belongs to


class StoredSession:
    """A session of a store, read lazily; behaves like :class:`Session` for every reader."""

    def __init__(self, path: str | os.PathLike, session_id: str, entry: dict):
        self.path = Path(path)
        self.id = session_id
        self.entry = entry
        self.unit_ids: list[str] = list(entry["unit_ids"])
        self.targets: list[str] = list(entry["targets"])
        self.series: dict[str, StoredSeries] = {n: StoredSeries(self, n, i) for n, i in entry["series"].items()}
        self._head: dict | None = None
        self._mapped: dict[str, np.ndarray] | None = None
        self._pid = -1

    # small parts, read from the file on first use -------------------------------------
    def _header(self) -> dict:
        if self._head is None:
            try:
                self._head = read_header(self.path)
            except (OSError, ValueError) as err:
                raise UserError(f"cannot read session {self.id} from {self.path}: {err}; re-create it with `popdecode prepare`") from None
        return self._head

    @property
    def unit_info(self) -> dict[str, np.ndarray]:
        return self._header()["unit_info"]

    @property
    def trials(self) -> dict[str, np.ndarray] | None:
        return self._header()["trials"]

    @property
    def intervals(self) -> dict[str, Intervals]:
        return self._header()["intervals"]

    @property
    def domain(self) -> Intervals:
        return self._header()["domain"]

    @property
    def metadata(self) -> dict[str, str]:
        return self._header()["metadata"]

    # summary (from the manifest) --------------------------------------------------------
    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    @property
    def num_spikes(self) -> int:
        return int(self.entry["num_spikes"])

    @property
    def start(self) -> float:
        return float(self.entry["start"])

    @property
    def end(self) -> float:
        return float(self.entry["end"])

    @property
    def duration(self) -> float:
        return float(self.entry["duration"])

    def split(self, name: str) -> Intervals:
        """The ``train``, ``valid`` or ``test`` intervals (empty if the session has none)."""
        return self.intervals.get(name, Intervals.empty())

    # big arrays, memory-mapped ------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        if self._mapped is not None and self._pid == os.getpid():
            return self._mapped
        global _OPEN_PID
        head = self._header()
        pid = os.getpid()
        if _OPEN_PID != pid:
            # A forked DataLoader worker maps files afresh rather than share the parent's maps.
            _OPEN_MAPS.clear()
            _OPEN_PID = pid
        self._mapped = map_arrays(self.path, head["arrays"])
        self._pid = pid
        _OPEN_MAPS[id(self)] = weakref.ref(self)
        while len(_OPEN_MAPS) > MAX_OPEN_SESSIONS:
            _, ref = _OPEN_MAPS.popitem(last=False)
            old = ref()
            if old is not None:
                old._mapped = None  # the map closes once no window still views it
        return self._mapped

    @property
    def spike_times(self) -> np.ndarray:
        return self._arrays()["spike_times"]

    @property
    def spike_units(self) -> np.ndarray:
        return self._arrays()["spike_units"]

    def _bounds(self, key: str, times: np.ndarray, t0: float, t1: float) -> tuple[int, int]:
        index, origin, step = self._head["index"][key]
        lo, hi = index_bounds(index, origin, step, t0, t1)
        i0, i1 = times[lo:hi].searchsorted((t0, t1))
        return lo + int(i0), lo + int(i1)

    def window(self, t0: float, t1: float, series: list[str] | None = None) -> Window:
        """Spikes and behaviour samples with t0 <= t < t1, times relative to ``t0``.

        Only the bytes of this window are read from disk. ``series`` limits which behaviour
        series are returned (default: all). The arrays returned are fresh copies.
        """
        arrays = self._arrays()
        times = arrays["spike_times"]
        i0, i1 = self._bounds("spikes", times, t0, t1)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in self.series if series is None else series:
            if name not in self.series:
                raise KeyError(f"session {self.id} has no series {name!r}")
            ts = arrays[f"{name}/timestamps"]
            j0, j1 = self._bounds(name, ts, t0, t1)
            out[name] = (ts[j0:j1] - t0, arrays[f"{name}/values"][j0:j1].copy())
        return Window(
            session_id=self.id,
            start=float(t0),
            end=float(t1),
            spike_times=times[i0:i1] - t0,
            spike_units=arrays["spike_units"][i0:i1].astype(np.int64),
            series=out,
        )

    def __getstate__(self) -> dict:
        # Sent to a spawned worker without its memory map: the worker maps the file itself.
        state = dict(self.__dict__)
        state["_mapped"], state["_pid"] = None, -1
        return state

    def load(self) -> Session:
        """The whole session in memory."""
        return read_session_file(self.path)

    def __repr__(self) -> str:
        return f"StoredSession({self.id!r}, units={self.num_units}, spikes={self.num_spikes}, duration={self.duration:.1f}s)"


class Store:
    """A store directory, opened by reading its manifest only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest: dict = read_manifest(self.path)

    @property
    def session_ids(self) -> list[str]:
        return list(self.manifest["sessions"])

    def open(self, session_id: str) -> StoredSession:
        entry = self.manifest["sessions"].get(session_id)
        if entry is None:
            known = ", ".join(self.session_ids[:10]) + (", ..." if len(self) > 10 else "")
            raise UserError(f"no session {session_id!r} in store {self.path}; it holds: {known or 'nothing'}")
        return StoredSession(self.path / entry["file"], session_id, entry)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self.manifest["sessions"]

    def __iter__(self) -> Iterator[StoredSession]:
        return (self.open(sid) for sid in self.session_ids)

    def __len__(self) -> int:
        return len(self.manifest["sessions"])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, sessions={len(self)})"


def open_sessions(paths: list[str | os.PathLike]) -> list[StoredSession]:
    """Every session of the given stores, in order; refuses an id found in two stores."""
    out: list[StoredSession] = []
    seen: dict[str, Path] = {}
    for p in paths:
        store = Store(p)
        for sid in store.session_ids:
            if sid in seen:
                raise UserError(
                    f"session id {sid} is in both {seen[sid]} and {store.path}; "
                    "pass each store once, or re-prepare one of them under other names"
                )
            seen[sid] = store.path
            out.append(store.open(sid))
    return out
