"""`popdecode prepare` and `popdecode inspect` through the command-line entry point."""

from __future__ import annotations

import pytest

from popdecode.cli import main
from popdecode.data.store import Store

from .helpers import make_session, write_npz


@pytest.mark.parametrize("command", ["prepare", "inspect"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: popdecode {command}" in out and "all-or-nothing" in out
    if command == "prepare":
        assert "--target NAME" in out and "--overwrite" in out and "--seed" in out


def test_prepare_then_inspect(tmp_path, capsys):
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_npz(folder / "a.npz", make_session("a", n_trials=20, units=5))
    write_npz(folder / "b.npz", make_session("b", units=3, duration=120.0))
    store = tmp_path / "store"
    assert main(["prepare", str(folder), "--out", str(store), "--target", "hand_vel,force", "--seed", "4"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["session", "units", "duration_s", "spikes", "series", "(*target)", "train", "valid", "test"]
    st = Store(store)
    n_a, n_b = st.open("a").num_spikes, st.open("b").num_spikes
    assert lines[1].split() == ["a", "5", "30.0", str(n_a), "force*,", "hand_vel*", "14", "tr", "2", "tr", "4", "tr"]
    b = st.manifest["sessions"]["b"]["splits"]
    assert lines[2].split() == ["b", "3", "120.0", str(n_b), "force*,", "hand_vel*",
                                f"{b['train']['seconds']:.0f}", "s", f"{b['valid']['seconds']:.0f}", "s", f"{b['test']['seconds']:.0f}", "s"]
    assert lines[3] == "2 session(s)"
    assert st.open("a").targets == ["hand_vel", "force"]

    # --overwrite with another seed deals the trials differently
    before = list(st.open("a").trials["split"])
    assert main(["prepare", str(folder / "a.npz"), "--out", str(store), "--overwrite", "--seed", "5"]) == 0
    after = Store(store).open("a")
    assert list(after.trials["split"]) != before and after.targets == ["hand_vel"]


def test_inspect_refuses_non_store(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"popdecode: error: {tmp_path} is not a popdecode store (no manifest.json); "
        "create one with `popdecode prepare INPUT... --out DIR`")


def test_split_margin(tmp_path, capsys):
    """--split-margin sets how much train loses around each valid/test trial."""
    write_npz(tmp_path / "a.npz", make_session("a", n_trials=20, units=5))
    train = {}
    for margin in ("0", "1"):
        store = tmp_path / f"store{margin}"
        assert main(["prepare", str(tmp_path / "a.npz"), "--out", str(store), "--split-margin", margin]) == 0
        s = Store(store).open("a")
        held_out = s.split("valid").union(s.split("test"))
        train[margin] = s.split("train")
        assert train[margin].intersect(held_out.widen(float(margin))).duration == 0
    # margin 0: train is exactly the domain minus the held-out trials
    s0 = Store(tmp_path / "store0").open("a")
    expected = s0.domain.difference(s0.split("valid").union(s0.split("test")))
    assert abs(train["0"].duration - expected.duration) < 1e-9
    assert train["1"].duration < train["0"].duration
    capsys.readouterr()
    assert main(["prepare", str(tmp_path / "a.npz"), "--out", str(tmp_path / "bad"), "--split-margin", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "popdecode: error: --split-margin must be 0 or more seconds, got -1.0"
    assert not (tmp_path / "bad").exists()
