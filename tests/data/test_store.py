"""The store: round trips, window reads against the in-memory session, atomic writes."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from popdecode.data import store as store_mod
from popdecode.data.splits import assign_splits
from popdecode.data.store import Store, StoredSession, open_sessions, write_session
from popdecode.errors import UserError

from .helpers import make_session, store_snapshot


@pytest.fixture
def session():
    return assign_splits(make_session("s1", n_trials=12), seed=3)


@pytest.fixture
def store_dir(tmp_path, session):
    write_session(tmp_path / "store", session)
    write_session(tmp_path / "store", make_session("s2", units=300, duration=12.0, seed=1))
    return tmp_path / "store"


def assert_windows_equal(a, b):
    np.testing.assert_array_equal(a.spike_times, b.spike_times)
    np.testing.assert_array_equal(a.spike_units, b.spike_units)
    assert a.spike_units.dtype == np.int64 and b.spike_units.dtype == np.int64
    assert a.series.keys() == b.series.keys()
    for name in a.series:
        np.testing.assert_array_equal(a.series[name][0], b.series[name][0])
        np.testing.assert_array_equal(a.series[name][1], b.series[name][1])


def test_round_trip_keeps_everything(store_dir, session):
    stored = Store(store_dir).open("s1")
    back = stored.load()
    np.testing.assert_array_equal(back.spike_times, session.spike_times)
    np.testing.assert_array_equal(back.spike_units, session.spike_units)
    assert back.unit_ids == session.unit_ids == stored.unit_ids
    assert back.targets == ["hand_vel"] == stored.targets
    for name, s in session.series.items():
        np.testing.assert_array_equal(back.series[name].values, s.values)
        np.testing.assert_array_equal(stored.series[name].timestamps, s.timestamps)
        assert (stored.series[name].dim, stored.series[name].columns, stored.series[name].unit) == (s.dim, s.columns, s.unit)
    assert set(stored.intervals) == {"reach", "train", "valid", "test"}
    for name, iv in session.intervals.items():
        np.testing.assert_array_equal(stored.intervals[name].start, iv.start)
        np.testing.assert_array_equal(stored.split(name).end if name in ("train", "valid", "test") else stored.intervals[name].end, iv.end)
    assert list(stored.trials["result"]) == list(session.trials["result"])
    np.testing.assert_array_equal(stored.trials["stop"], session.trials["stop"])
    assert list(stored.trials["split"]) == list(session.trials["split"])
    assert list(stored.unit_info["brain_area"]) == list(session.unit_info["brain_area"])
    assert stored.metadata == session.metadata
    assert (stored.num_units, stored.num_spikes, stored.start, stored.end, stored.duration) == (
        session.num_units, session.num_spikes, session.start, session.end, session.duration)


def test_windows_match_in_memory_session(store_dir, session):
    stored = Store(store_dir).open("s1")
    rng = np.random.default_rng(0)
    starts = list(rng.uniform(0, 40, 200)) + [session.spike_times[10], 5.0, 34.5, -3.0, 100.0]
    for t0 in starts:
        for length in (1.0, 0.37, 2.5):
            assert_windows_equal(stored.window(t0, t0 + length), session.window(t0, t0 + length))
    w = stored.window(10.0, 11.0, series=["force"])
    assert list(w.series) == ["force"] and w.spike_times.min() >= 0 and w.spike_times.max() < 1.0
    w.series["force"][1][:] = 0  # a copy: writing to it leaves the file alone
    assert np.any(stored.window(10.0, 11.0).series["force"][1] != 0)


def test_window_spike_exactly_on_edges(tmp_path):
    s = make_session("edge", units=2, duration=4.0)
    s.spike_times = np.array([5.0, 6.0, 6.0, 7.0, 8.999999]); s.spike_units = np.array([0, 1, 0, 1, 0])
    write_session(tmp_path / "st", s)
    stored = Store(tmp_path / "st").open("edge")
    assert list(stored.window(6.0, 7.0).spike_times) == [0.0, 0.0]  # [t0, t1): 7.0 is out
    assert_windows_equal(stored.window(6.0, 7.0), s.window(6.0, 7.0))


def test_opening_reads_only_the_manifest(store_dir):
    for f in (store_dir / "sessions").iterdir():
        f.rename(f.with_suffix(".moved"))
    store = Store(store_dir)  # no session file is touched
    assert store.session_ids == ["s1", "s2"] and len(store) == 2 and "s2" in store
    sessions = list(store)
    assert [s.num_units for s in sessions] == [7, 300]
    assert sessions[1].series["hand_vel"].dim == 2
    manifest = json.loads((store_dir / "manifest.json").read_text())
    e = manifest["sessions"]["s1"]
    assert e["splits"]["valid"]["trials"] + e["splits"]["test"]["trials"] + e["splits"]["train"]["trials"] == 12
    assert e["series"]["hand_vel"] == {"dim": 2, "columns": ["vx", "vy"], "unit": "cm/s", "samples": 3000}
    with pytest.raises(UserError, match="cannot read session s1"):
        sessions[0].window(6, 7)


def test_existing_id_refused_and_store_unchanged(store_dir):
    before = store_snapshot(store_dir)
    with pytest.raises(UserError) as err:
        write_session(store_dir, make_session("s1", units=3))
    assert str(err.value) == f"session s1 is already in the store {store_dir}; pass --overwrite to replace it"
    assert store_snapshot(store_dir) == before
    write_session(store_dir, make_session("s1", units=3), overwrite=True)
    assert Store(store_dir).open("s1").num_units == 3
    assert sorted(p.name for p in (store_dir / "sessions").iterdir()) == ["s1.h5", "s2.h5"]


def test_failed_write_leaves_no_trace(tmp_path, monkeypatch):
    def boom(path, session):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_mod, "write_session_file", boom)
    with pytest.raises(RuntimeError):
        write_session(tmp_path / "new", make_session())
    assert not (tmp_path / "new").exists()


def test_unsafe_ids_get_safe_file_names(tmp_path):
    write_session(tmp_path / "st", make_session("monkey C day:1"))
    store = Store(tmp_path / "st")
    assert store.manifest["sessions"]["monkey C day:1"]["file"].startswith("sessions/monkey_C_day_1-")
    assert store.open("monkey C day:1").window(6, 7).session_id == "monkey C day:1"


def test_open_sessions(store_dir, tmp_path):
    write_session(tmp_path / "other", make_session("s3"))
    assert [s.id for s in open_sessions([store_dir, tmp_path / "other"])] == ["s1", "s2", "s3"]
    assert all(isinstance(s, StoredSession) for s in open_sessions([store_dir]))
    with pytest.raises(UserError) as err:
        open_sessions([store_dir, store_dir])
    assert str(err.value) == (f"session id s1 is in both {store_dir} and {store_dir}; "
                              "pass each store once, or re-prepare one of them under other names")
    with pytest.raises(UserError) as err:
        open_sessions([tmp_path / "nope"])
    assert str(err.value) == (f"store {tmp_path / 'nope'} does not exist; "
                              f"create it with `popdecode prepare INPUT... --out {tmp_path / 'nope'}`")
    with pytest.raises(UserError, match="is not a popdecode store"):
        open_sessions([tmp_path])
    with pytest.raises(UserError, match="no session 'zz' in store"):
        Store(store_dir).open("zz")


def test_many_sessions_beyond_open_map_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_OPEN_SESSIONS", 2)
    sessions = [make_session(f"m{i}", units=3, duration=5.0, seed=i) for i in range(5)]
    for s in sessions:
        write_session(tmp_path / "st", s)
    stored = list(Store(tmp_path / "st"))
    for _ in range(2):
        for mem, disk in zip(sessions, stored):
            assert_windows_equal(disk.window(6.0, 7.5), mem.window(6.0, 7.5))
    assert sum(s._mapped is not None for s in stored) == 2


_FORKED = {}


def _child_window():
    stored = _FORKED["session"]
    inherited = stored._mapped is not None and stored._pid != os.getpid()
    w = stored.window(10.0, 11.0)
    return inherited, stored._pid == os.getpid(), w.spike_times.tolist(), w.series["hand_vel"][1].tolist()


def test_windows_in_forked_worker(store_dir):
    stored = Store(store_dir).open("s1")
    _FORKED["session"] = stored
    parent = _child_window()  # the parent maps the file before forking
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply(_child_window)
    assert child[:2] == (True, True)  # the worker saw the parent's map and made its own
    assert child[2:] == parent[2:]
    clone = pickle.loads(pickle.dumps(stored))  # what a spawned worker receives
    assert clone._mapped is None and clone.window(10.0, 11.0).spike_times.tolist() == parent[2]
