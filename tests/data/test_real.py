"""The five real NWB recordings: NWB -> store -> windows, checked against pynwb directly."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.cli import main
from popdecode.data.store import Store

MONKEY_FILES = ("chewie_20131003.nwb", "chewie_20131219.nwb", "mihi_20140303.nwb")
RAT_FILES = ("rat_linear_track.nwb", "rat_w_maze.nwb")

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def real_store(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "store"
    assert main(["prepare", str(real_data), "--out", str(out)]) == 0
    return Store(out)


def read_with_pynwb(path):
    """Spike times per unit and the target series, straight from pynwb."""
    import pynwb

    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        spikes = [np.asarray(nwb.units["spike_times"][i]) for i in range(len(nwb.units))]
        beh = nwb.processing["behavior"]
        ts = beh["hand_vel"] if "hand_vel" in beh.data_interfaces else beh["Position"]["position"]
        n_trials = 0 if nwb.trials is None else len(nwb.trials)
        return spikes, np.asarray(ts.timestamps[:]), np.asarray(ts.data[:]), n_trials


@pytest.mark.parametrize("name", MONKEY_FILES + RAT_FILES)
def test_windows_match_pynwb(real_data, real_store, name):
    spikes, ts, values, n_trials = read_with_pynwb(real_data / name)
    sid = name[:-4]
    s = real_store.open(sid)
    assert s.num_units == len(spikes) and s.num_spikes == sum(map(len, spikes))
    assert s.targets == (["hand_vel"] if name in MONKEY_FILES else ["position"])
    target = s.targets[0]
    rng = np.random.default_rng(1)
    starts = list(rng.uniform(s.start - 0.5, s.end - 0.5, 40)) + [s.start, s.end - 1.0, float(ts[0]) - 0.02]
    for t0 in starts:
        t1 = t0 + 1.0
        w = s.window(t0, t1)
        counts = np.bincount(w.spike_units, minlength=len(spikes))
        expect = [np.count_nonzero((st >= t0) & (st < t1)) for st in spikes]
        np.testing.assert_array_equal(counts, expect)
        pick = (ts >= t0) & (ts < t1)
        got_t, got_v = w.series[target]
        assert len(got_t) == pick.sum()
        np.testing.assert_allclose(got_t + t0, ts[pick], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(got_v, values[pick].astype(np.float32))

    entry = real_store.manifest["sessions"][sid]
    if name in MONKEY_FILES:  # trials dealt 70 / 10 / 20
        sizes = [entry["splits"][k]["trials"] for k in ("train", "valid", "test")]
        assert sum(sizes) == n_trials and sizes[1] == round(0.1 * n_trials) and sizes[2] == round(0.2 * n_trials)
    else:  # no trials: ~60 s time blocks
        assert n_trials == 0 and "trials" not in entry["splits"]["valid"]
        total = entry["duration"]
        assert abs(entry["splits"]["valid"]["seconds"] / total - 0.1) < 0.03
        assert abs(entry["splits"]["test"]["seconds"] / total - 0.2) < 0.03
        assert 0.55 < entry["splits"]["train"]["seconds"] / total < 0.7
        blocks = (s.split("valid").end - s.split("valid").start) / (total / round(total / 60.0))
        np.testing.assert_allclose(blocks, np.round(blocks), atol=1e-6)  # whole ~60 s blocks (adjacent ones merge)


def test_real_ids_distinct_and_readable(real_store):
    assert real_store.session_ids == [f[:-4] for f in sorted(MONKEY_FILES + RAT_FILES)]
