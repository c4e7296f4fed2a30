"""Importers: a temporaldata/brainsets fixture, the .npz layout, a small NWB, and bad input."""

from __future__ import annotations

import datetime

import h5py
import numpy as np
import pytest

from popdecode.cli import main
from popdecode.data.importers import load_recording
from popdecode.data.splits import assign_splits
from popdecode.data.store import Store, write_session

from .helpers import make_session, store_snapshot, write_npz


def write_temporaldata(path, *, rng=np.random.default_rng(0)):
    """A brainsets-style session written by the temporaldata package itself."""
    from temporaldata import ArrayDict, Data, Interval, IrregularTimeSeries

    times = np.sort(rng.uniform(0.0, 20.0, 400))
    units = rng.integers(0, 5, 400)
    ts = np.arange(0.0, 20.0, 0.01)
    vel = rng.standard_normal((len(ts), 2))
    starts = np.arange(0.0, 20.0, 2.0)
    data = Data(
        brainset=Data(id="perich_miller_population_2018"),
        subject=Data(id="monkey_c", species="macaca_mulatta"),
        session=Data(id="c_20131003_center_out_reaching"),
        spikes=IrregularTimeSeries(timestamps=times, unit_index=units, domain="auto"),
        units=ArrayDict(id=np.array([f"c/elec{i}" for i in range(5)]), unit_number=np.arange(5)),
        cursor=IrregularTimeSeries(timestamps=ts, pos=np.cumsum(vel, 0), vel=vel, domain="auto"),
        trials=Interval(start=starts, end=starts + 2.0, is_valid=np.arange(10) % 3 != 0, target_id=np.arange(10) % 8),
        movement_phases=Data(
            hold_period=Interval(start=starts, end=starts + 0.5),
            reach_period=Interval(start=starts + 0.5, end=starts + 1.5),
            return_period=Interval(start=starts + 1.5, end=starts + 2.0),
            domain="auto",
        ),
        cursor_outlier_segments=Interval(start=np.array([3.0]), end=np.array([3.2])),
        domain=Interval(start=np.array([0.0]), end=np.array([20.0])),
    )
    data.train_domain = Interval(start=np.array([0.0]), end=np.array([13.0]))
    data.valid_domain = Interval(start=np.array([14.0]), end=np.array([16.0]))
    data.test_domain = Interval(start=np.array([18.0]), end=np.array([20.0]))
    with h5py.File(path, "w") as f:
        data.to_hdf5(f)
    return times, units, ts, vel


def write_nwb(path, unit_ids=(5, 6, 7)):
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import Position

    nwb = NWBFile(session_description="tiny", identifier="abc",
                  session_start_time=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    for uid, st in zip(unit_ids, ([0.1, 0.5, 1.5], [0.2], [])):
        nwb.add_unit(spike_times=st, id=uid)
    beh = nwb.create_processing_module("behavior", "behaviour")
    pos = Position(name="Position")
    pos.create_spatial_series(name="position", data=np.arange(40.0).reshape(20, 2), timestamps=np.arange(20) * 0.1,
                              reference_frame="camera", unit="px")
    beh.add(pos)
    beh.add(TimeSeries(name="speed", data=np.arange(20.0), timestamps=np.arange(20) * 0.1, unit="m/s", conversion=0.5))
    nwb.add_epoch(0.0, 1.0, ["run"])
    nwb.add_epoch(1.0, 2.0, ["rest"])
    nwb.add_trial(start_time=0.0, stop_time=0.9)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_temporaldata_fixture_imports(tmp_path):
    path = tmp_path / "c_20131003_center_out_reaching.h5"
    times, units, ts, vel = write_temporaldata(path)
    s = load_recording(path)
    assert s.id == "c_20131003_center_out_reaching"
    assert s.unit_ids == [f"c/elec{i}" for i in range(5)] and list(s.unit_info["unit_number"]) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(s.spike_times, times)
    np.testing.assert_array_equal(s.spike_units, units)
    assert s.targets == ["cursor_vel"] and set(s.series) == {"cursor_vel", "cursor_pos"}
    np.testing.assert_allclose(s.series["cursor_vel"].values, vel.astype(np.float32))
    np.testing.assert_array_equal(s.series["cursor_vel"].timestamps, ts)
    assert set(s.trials) == {"start", "stop", "is_valid", "target_id"}
    assert s.trials["is_valid"].dtype == bool and s.trials["is_valid"].sum() == 6
    assert set(s.intervals) == {"train", "valid", "test", "hold", "reach", "return", "outlier", "eval"}
    np.testing.assert_array_equal(s.intervals["eval"].start, np.arange(0.5, 20.0, 2.0))
    np.testing.assert_array_equal(s.split("valid").start, [14.0])
    np.testing.assert_array_equal(s.intervals["outlier"].end, [3.2])
    assert (s.metadata["subject"], s.metadata["species"], s.metadata["brainset"]) == (
        "monkey_c", "macaca_mulatta", "perich_miller_population_2018")
    kept = assign_splits(s, seed=0)  # brainsets' own split is kept
    np.testing.assert_array_equal(kept.split("train").end, [13.0])
    write_session(tmp_path / "st", kept)
    w = Store(tmp_path / "st").open(s.id).window(4.0, 5.0)
    pick = (times >= 4.0) & (times < 5.0)
    np.testing.assert_allclose(w.spike_times, times[pick] - 4.0)
    np.testing.assert_array_equal(w.spike_units, units[pick])
    assert len(w.series["cursor_vel"][0]) == np.sum((ts >= 4.0) & (ts < 5.0))


def test_npz_layout_round_trip(tmp_path):
    mem = make_session("rec", n_trials=6)
    s = load_recording(write_npz(tmp_path / "rec.npz", mem))
    np.testing.assert_array_equal(s.spike_times, mem.spike_times)
    np.testing.assert_array_equal(s.series["force"].values, mem.series["force"].values)
    assert (s.series["hand_vel"].columns, s.series["hand_vel"].unit, s.targets) == (["vx", "vy"], "cm/s", ["hand_vel"])
    assert list(s.trials["result"]) == list(mem.trials["result"])
    np.testing.assert_array_equal(s.intervals["reach"].end, mem.intervals["reach"].end)
    assert s.metadata["subject"] == "monkey_x"
    assert load_recording(tmp_path / "rec.npz", ["force", "hand_vel"]).targets == ["force", "hand_vel"]


def test_small_nwb(tmp_path):
    s = load_recording(write_nwb(tmp_path / "tiny.nwb"))
    assert s.id == "tiny" and s.unit_ids == ["5", "6", "7"] and s.targets == ["position"]
    np.testing.assert_array_equal(s.spike_times, [0.1, 0.2, 0.5, 1.5])
    np.testing.assert_array_equal(s.spike_units, [0, 1, 0, 0])
    np.testing.assert_allclose(s.series["speed"].values[:, 0], np.arange(20.0) * 0.5)  # conversion applied
    assert (s.series["position"].unit, s.series["position"].columns) == ("px", ["x", "y"])
    assert set(s.intervals) == {"epochs", "run", "rest"}
    np.testing.assert_array_equal(s.intervals["rest"].start, [1.0])
    np.testing.assert_array_equal(s.trials["stop"], [0.9])


# ------------------------------------------------------------------------------------
# bad input: one clear line, exit 2, store unchanged
# ------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    write_session(root, make_session("existing"))
    return root


def refused(capsys, store, argv, message):
    before = store_snapshot(store)
    capsys.readouterr()
    assert main(["prepare", *map(str, argv), "--out", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"popdecode: error: {message}"
    assert store_snapshot(store) == before  # byte-identical manifest, no stray files


def test_bad_inputs_are_refused(tmp_path, store, capsys):
    good = write_npz(tmp_path / "good.npz", make_session("good"))
    junk = tmp_path / "junk.nwb"
    junk.write_bytes(b"this is not a recording\n" * 10)
    refused(capsys, store, [good, junk], f"{junk} is not an NWB, brainsets/temporaldata HDF5 or .npz file; "
            "popdecode reads NWB, brainsets/temporaldata HDF5 and .npz files (see docs/data_formats.md)")

    nwb = write_nwb(tmp_path / "whole.nwb")
    cut = tmp_path / "cut.nwb"
    cut.write_bytes(nwb.read_bytes()[: nwb.stat().st_size // 2])
    refused(capsys, store, [good, cut],
            f"cannot read {cut}: not a complete HDF5 file (corrupt or truncated); re-download or re-export it")

    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    refused(capsys, store, [plain], f"{plain} is an HDF5 file but neither NWB nor brainsets/temporaldata; "
            "popdecode reads NWB, brainsets/temporaldata HDF5 and .npz files (see docs/data_formats.md)")

    refused(capsys, store, [good, nwb, "--target", "hand_vel"],
            f"{nwb}: no series named hand_vel; the file has: position, speed; pick one of them with --target NAME")
    refused(capsys, store, [tmp_path / "missing.nwb"], f"{tmp_path / 'missing.nwb'} does not exist; check the path")

    dup = write_nwb(tmp_path / "dup.nwb", unit_ids=(3, 4, 3))
    refused(capsys, store, [dup], "session dup: duplicate unit ids '3' (1 ids appear more than once); "
            "unit ids must be unique within a session: fix the units table of the source file")

    again = write_npz(tmp_path / "existing.npz", make_session("x"))
    refused(capsys, store, [good, again], f"session existing is already in the store {store}; pass --overwrite to replace it")

    (tmp_path / "elsewhere").mkdir()
    twin = write_npz(tmp_path / "elsewhere" / "good.npz", make_session("other"))
    refused(capsys, store, [good, twin], "session id good appears twice in the input; give the files distinct names")

    objs = tmp_path / "objs.npz"
    np.savez(objs, spike_times=np.zeros(1), spike_units=np.zeros(1, int), unit_ids=np.array(["a", 1], dtype=object))
    refused(capsys, store, [objs], f"{objs} stores Python objects; save strings as NumPy string arrays (np.array(ids, dtype=str))")

    rat = write_npz(tmp_path / "rat.npz", make_session("rat"))
    with np.load(rat) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("behavior.hand_vel")}
    np.savez(rat, **arrays)
    refused(capsys, store, [rat], f"{rat}: none of the default targets (hand_vel, cursor_vel, position) is present; "
            "the file has: force; pick the series to decode with --target NAME")


def test_failed_prepare_creates_no_store(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 broken")
    assert main(["prepare", str(write_npz(tmp_path / "ok.npz", make_session("ok"))), str(junk), "--out", str(tmp_path / "new")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"popdecode: error: cannot read {junk}: not a complete .npz file (corrupt or truncated); re-save it")
    assert not (tmp_path / "new").exists()


def test_warnings_are_one_line_each(tmp_path, capsys):
    s = make_session("noisy", units=4)
    s.spike_units[s.spike_units == 2] = 1
    s.series["hand_vel"].values[:4] = np.nan
    path = write_npz(tmp_path / "noisy.npz", s)
    capsys.readouterr()
    assert main(["prepare", str(path), "--out", str(tmp_path / "st")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("popdecode: warning")]
    assert err == ["popdecode: warning: session noisy: 1 of 4 units have no spikes (kept)",
                   "popdecode: warning: session noisy: series 'hand_vel' has 4 samples with NaN "
                   "(kept; masked out of training and evaluation)"]
