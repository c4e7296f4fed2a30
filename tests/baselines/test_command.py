"""`popdecode baseline` end to end on a tiny store, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from popdecode.baselines.features import FeatureConfig
from popdecode.baselines.run import fit_baseline
from popdecode.cli import main
from popdecode.data.store import write_session
from popdecode.evaluate.results import read_results

from .synthetic import make_session


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    for i in range(2):
        write_session(root / "store", make_session(f"s{i}", seed=i, num_trials=15, num_units=12))
    return root / "store"


def test_wiener_end_to_end_matches_in_memory_fit(store, capsys):
    assert main(["baseline", "--data", str(store), "--model", "wiener", "--bin", "0.05", "--lags", "4"]) == 0
    out = capsys.readouterr().out
    assert "mean over sessions" in out and "s0" in out and "s1" in out
    # Default output: beside the store, never inside it.
    csv = store.parent / "baseline_wiener.csv"
    rows = read_results(csv)
    assert read_results(csv.with_suffix(".json")) == rows
    assert not any(p.name.startswith("baseline") for p in store.iterdir())
    assert [(r.session, r.split, r.method, r.readout) for r in rows] == [
        ("s0", "test", "wiener", "hand_vel"), ("s1", "test", "wiener", "hand_vel")]
    # The stored session gives exactly what the in-memory session gives.
    for r, seed in zip(rows, (0, 1)):
        mem = fit_baseline(make_session(r.session, seed=seed, num_trials=15, num_units=12), "hand_vel",
                           model="wiener", features=FeatureConfig(bin=0.05, lags=4))
        assert r.r2 == pytest.approx(mem.rows["test"].r2, abs=1e-6)
        assert r.n_timestamps == mem.rows["test"].n_timestamps
    details = json.loads((store.parent / "baseline_wiener.details.json").read_text())
    assert [r["split"] for r in details["rows"]["valid"]] == ["valid", "valid"]
    assert details["features"] == {"bin": 0.05, "lags": 4, "future": 0}


def test_mlp_and_gru_run_and_write_where_asked(store, tmp_path, capsys):
    for model in ("mlp", "gru"):
        out = tmp_path / f"{model}.csv"
        assert main(["baseline", "--data", str(store), "--model", model, "--session", "s1", "--split", "valid",
                     "--hidden", "16", "--epochs", "4", "--lr", "0.01", "--bin", "0.05", "--lags", "3", "--out", str(out)]) == 0
        rows = read_results(out)
        assert [(r.session, r.split, r.method) for r in rows] == [("s1", "valid", model)]
        assert rows[0].r2 > 0.3 and rows[0].n_timestamps == 300  # 3 valid trials x 1 s of eval at 100 Hz


@pytest.mark.parametrize("extra,message", [
    (["--bin", "0"], "--bin must be a positive number of seconds, got 0.0"),
    (["--lags", "0"], "--lags and --future must be >= 0 with at least one bin in all, got 0 and 0"),
    (["--session", "nope"], "no session 'nope' in {store}; it holds: s0, s1"),
    (["--target", "pos"], "session s0 has no behaviour series 'pos' (it has: hand_vel); pick another with --target"),
    (["--out", "x.json"], "--out must name a .csv file (a .json copy is written beside it), got x.json"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(store, capsys, extra, message):
    assert main(["baseline", "--data", str(store), "--model", "wiener", "--out", str(store.parent / "bad.csv"), *extra]
                if "--out" not in extra else ["baseline", "--data", str(store), "--model", "wiener", *extra]) == 2
    err = capsys.readouterr().err
    assert err == f"popdecode: error: {message.format(store=store)}\n"
    assert not (store.parent / "bad.csv").exists()


def test_empty_store_is_refused(tmp_path, capsys):
    from popdecode.data.store import StoreWriter

    with StoreWriter(tmp_path / "empty"):
        pass
    assert main(["baseline", "--data", str(tmp_path / "empty"), "--model", "wiener"]) == 2
    assert "no sessions in" in capsys.readouterr().err


def test_a_split_with_constant_targets_is_left_out_of_the_mean_and_stored_as_null(tmp_path, capsys):
    moving, resting = make_session("moving", seed=0, num_trials=15, num_units=12), make_session(
        "resting", seed=1, num_trials=15, num_units=12)
    series = resting.series["hand_vel"]
    series.values[resting.split("valid").contains(series.timestamps)] = 0.25  # still through every valid block
    for s in (moving, resting):
        write_session(tmp_path / "store", s)
    out = tmp_path / "w.csv"
    assert main(["baseline", "--data", str(tmp_path / "store"), "--model", "wiener", "--bin", "0.05", "--lags", "4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    def strict(name):  # a JSON parser that knows no Infinity or NaN
        raise ValueError(f"not JSON: {name}")

    details = json.loads(out.with_name("w.details.json").read_text(), parse_constant=strict)
    valid = {r["session"]: r["r2"] for r in details["rows"]["valid"]}
    assert valid["resting"] is None and valid["moving"] > 0.3
    assert f"(valid split: mean R^2 over sessions {valid['moving']:.4f}, leaving out resting (targets constant there)" \
        in printed
