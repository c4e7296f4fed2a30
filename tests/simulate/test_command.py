"""`popdecode simulate`: help, output layout, what the store holds, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.cli import main
from popdecode.data.store import Store
from popdecode.simulate.ground_truth import load_ground_truth
from popdecode.simulate.simulator import simulate_dataset

from .conftest import small_config

ARGS = ["--animals", "2", "--sessions-per-animal", "1", "--trials-per-session", "6", "--seed", "7"]


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--animals", "--sessions-per-animal", "--seed", "--trials-per-session",
                   "--task", "--min-units", "--max-units", "--no-rates", "--overwrite"):
        assert option in out
    assert "ground_truth.h5" in out


def test_output_layout_and_contents(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *ARGS]) == 0
    assert "wrote 2 sessions" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["ground_truth.h5", "manifest.json", "sessions"]
    assert sorted(p.name for p in (out / "sessions").iterdir()) == ["sim-a0-s0.h5", "sim-a1-s0.h5"]
    store = Store(out)
    assert store.session_ids == ["sim-a0-s0", "sim-a1-s0"]
    # The stored sessions are the ones the API simulates with the same settings.
    sessions, truth = simulate_dataset(small_config(sessions_per_animal=1, trials_per_session=6), show_progress=False)
    for s in sessions:
        stored = store.open(s.id)
        assert stored.unit_ids == s.unit_ids and stored.metadata == s.metadata
        assert np.array_equal(stored.spike_times, s.spike_times)
        assert np.array_equal(stored.series["hand_vel"].values, s.series["hand_vel"].values)
        assert np.array_equal(stored.intervals["eval"].start, s.intervals["eval"].start)
        assert np.array_equal(stored.split("test").start, s.split("test").start)
    back = load_ground_truth(out)
    for sid in truth.unit_pool_index:
        assert np.array_equal(back.unit_pool_index[sid], truth.unit_pool_index[sid])


def test_refusals_leave_nothing_behind(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--min-units", "300", "--max-units", "250"]) == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: need 1 <= min_units <= max_units <= pool_size, got 300, 250, 300; "
        "change the options of `popdecode simulate`"
    )
    assert not out.exists()
    assert main(["simulate", "--out", str(out), *ARGS, "--no-rates"]) == 0
    before = (out / "ground_truth.h5").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["simulate", "--out", str(out), *ARGS]) == 2
    assert capsys.readouterr().err.strip() == (
        f"popdecode: error: {out} already holds a simulated dataset; pass --overwrite or choose another --out"
    )
    assert (out / "ground_truth.h5").stat().st_mtime_ns == before
    assert load_ground_truth(out).rates == {}  # --no-rates left them out
    assert main(["simulate", "--out", str(out), *ARGS, "--overwrite"]) == 0
    assert set(load_ground_truth(out).rates) == {"sim-a0-s0", "sim-a1-s0"}
