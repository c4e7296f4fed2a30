"""popdecode evaluate: the printed table, the prediction file, and its error messages."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from popdecode.cli import main
from popdecode.data.session import Series
from popdecode.data.store import write_session
from popdecode.evaluate.prediction_file import read_predictions
from popdecode.train.config import TrainConfig
from popdecode.train.trainer import train_from_scratch
from train.easy_data import TINY_MODEL, easy_sessions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store of two easy sessions and a tiny model trained on it for a few epochs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    sessions = easy_sessions(2)
    for s in sessions:
        write_session(root / "store", s)
    cfg = TrainConfig(data=[str(root / "store")], epochs=4, batch_size=8, lr=3e-3, model_overrides=dict(TINY_MODEL))
    train_from_scratch(cfg, root / "run")
    yield root, sessions
    torch.set_num_threads(threads)


def r2_by_hand(y, yhat):
    """1 - SS_res / SS_tot per dimension, averaged: written out independently of metrics.py."""
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    dims = []
    for d in range(y.shape[1]):
        ss_res = sum((a - b) ** 2 for a, b in zip(y[:, d], yhat[:, d]))
        mean = sum(y[:, d]) / len(y)
        ss_tot = sum((a - mean) ** 2 for a in y[:, d])
        dims.append(1 - ss_res / ss_tot)
    return sum(dims) / len(dims)


def test_table_and_prediction_file_agree(trained, capsys):
    root, sessions = trained
    assert main(["evaluate", str(root / "run"), "--data", str(root / "store"), "--split", "test"]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: float(line.split()[4]) for line in printed[1:3]}
    mean_line = [line for line in printed if line.startswith("mean over sessions")][0]

    items = {it.session: it for it in read_predictions(root / "run" / "predictions_test.h5")}
    assert set(items) == {"easy-0", "easy-1"}
    for s in sessions:
        it = items[s.id]
        # every behaviour sample inside the test trials, on the session clock, in cm/s
        series = s.series["hand_vel"]
        inside = s.split("test").contains(series.timestamps)
        np.testing.assert_allclose(it.timestamps, series.timestamps[inside], atol=1e-6)
        np.testing.assert_array_equal(it.target, series.values[inside])
        np.testing.assert_array_equal(it.eval_mask, s.intervals["eval"].contains(series.timestamps[inside]))
        assert it.columns == ["vx", "vy"] and it.unit == "cm/s"
        # predictions are in the series' units (targets have mean ~3 and spread ~7 there)
        assert abs(it.prediction[:, 0].mean() - 3.0) < 3.0
        r2 = r2_by_hand(it.target[it.eval_mask], it.prediction[it.eval_mask])
        assert table[s.id] == pytest.approx(r2, abs=5e-5)  # the table prints 4 decimals
    assert float(mean_line.split()[-1]) == pytest.approx(np.mean(list(table.values())), abs=1e-4)

    with open(root / "run" / "results_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["session"] for r in rows] == ["easy-0", "easy-1"]
    assert float(rows[0]["r2"]) == pytest.approx(
        r2_by_hand(items["easy-0"].target[items["easy-0"].eval_mask], items["easy-0"].prediction[items["easy-0"].eval_mask]))
    assert int(rows[0]["n_timestamps"]) == int(items["easy-0"].eval_mask.sum())
    assert (root / "run" / "results_test.json").exists()


def test_missing_run(trained, tmp_path, capsys):
    root, _ = trained
    assert main(["evaluate", str(tmp_path / "nope"), "--data", str(root / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"popdecode: error: run directory {tmp_path / 'nope'} does not exist; "
                   f"train a model first (popdecode train --out {tmp_path / 'nope'})")


def test_unknown_session(trained, tmp_path, capsys):
    root, _ = trained
    other = easy_sessions(3)[2]
    write_session(tmp_path / "store", other)
    assert main(["evaluate", str(root / "run"), "--data", str(tmp_path / "store"), "--sessions", "easy-2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: session 'easy-2' is not in the model; adapt the model to it first "
        "(popdecode adapt) or pick one of: easy-0, easy-1")
    assert main(["evaluate", str(root / "run"), "--data", str(tmp_path / "store")]) == 2
    assert "none of the 1 sessions" in capsys.readouterr().err


def test_data_without_the_models_readout(trained, tmp_path, capsys):
    root, sessions = trained
    s = sessions[0]
    renamed = dataclasses.replace(s, series={"position": Series(s.series["hand_vel"].timestamps, s.series["hand_vel"].values)},
                                  targets=["position"])
    write_session(tmp_path / "store", renamed)
    assert main(["evaluate", str(root / "run"), "--data", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: session 'easy-0' has no series 'hand_vel', which the model decodes for it; "
        "series in the data: position")


def test_help_mentions_split_and_outputs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--split" in out and "predictions_<split>.h5" in out


def by_hand(run, session, t, delay=0.0):
    """The model on the raw spikes of [t + delay - 1, t + delay), asked at t, in recorded units."""
    from popdecode.model.io import load_model
    from popdecode.train.setup import normalization_from_meta

    model, meta = load_model(run)
    s, t0 = session, t + delay - 1.0
    on = (s.spike_times >= t0) & (s.spike_times < t0 + 1.0)
    rows = torch.from_numpy(model.unit_vocab.index([f"{s.id}/{u}" for u in s.unit_ids]))
    units = torch.cat([rows.repeat_interleave(2), rows[torch.from_numpy(s.spike_units[on])]])
    types = torch.cat([torch.tensor([1, 2]).repeat(len(rows)), torch.zeros(int(on.sum()), dtype=torch.int64)])
    times = torch.cat([torch.tensor([0.0, 1.0]).repeat(len(rows)), torch.from_numpy((s.spike_times[on] - t0).astype(np.float32))])
    with torch.no_grad():
        y = model.decode_window(input_units=units, input_types=types, input_times=times,
                                session_index=int(model.session_vocab.index([s.id])[0]),
                                output_times=torch.tensor([t - t0], dtype=torch.float32))[0].numpy()
    mean, std = normalization_from_meta(meta)["hand_vel"]
    return y * std + mean


def test_causal_scores_the_same_samples_from_windows_ending_at_them(trained, capsys):
    root, sessions = trained
    run, store = str(root / "run"), str(root / "store")
    assert main(["evaluate", run, "--data", store]) == 0
    assert main(["evaluate", run, "--data", store, "--causal"]) == 0
    capsys.readouterr()
    usual = {r["session"]: r for r in csv.DictReader(open(root / "run" / "results_test.csv"))}
    causal = {r["session"]: r for r in csv.DictReader(open(root / "run" / "results_test_causal.csv"))}
    assert {r["method"] for r in causal.values()} == {"poyo-causal"}
    assert all(causal[s]["n_timestamps"] == usual[s]["n_timestamps"] for s in usual)
    # one prediction by hand: the model on the raw spikes of [t - 1, t), asked at the window's end
    item = {it.session: it for it in read_predictions(root / "run" / "predictions_test_causal.h5")}["easy-1"]
    t = item.timestamps[item.eval_mask][17]
    np.testing.assert_allclose(item.prediction[item.eval_mask][17], by_hand(run, sessions[1], t), rtol=1e-4, atol=1e-4)


def test_causal_with_a_delay_answers_each_sample_from_the_window_ending_later(trained, capsys):
    """--causal --delay D: sample t from [t + D - 1, t + D), asked at t."""
    root, sessions = trained
    run, store = str(root / "run"), str(root / "store")
    assert main(["evaluate", run, "--data", store, "--causal", "--delay", "0.05"]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(root / "run" / "results_test_causal_delay50ms.csv")))
    assert {r["method"] for r in rows} == {"poyo-causal+50ms"}
    item = {it.session: it for it in read_predictions(root / "run" / "predictions_test_causal_delay50ms.h5")}["easy-0"]
    t = item.timestamps[item.eval_mask][5]
    np.testing.assert_allclose(item.prediction[item.eval_mask][5], by_hand(run, sessions[0], t, delay=0.05),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flags, message", [
    (["--delay", "0.05"], "--delay applies to causal decoding: add --causal"),
    (["--causal", "--delay", "1.0"], "--delay must be at least 0 and shorter than the model's 1 s window (got 1)"),
    (["--causal", "--delay", "-0.01"], "--delay must be at least 0 and shorter than the model's 1 s window (got -0.01)"),
])
def test_bad_delay_is_one_line(trained, tmp_path, capsys, flags, message):
    root, _ = trained
    out = tmp_path / "r.csv"
    assert main(["evaluate", str(root / "run"), "--data", str(root / "store"), "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err == f"popdecode: error: {message}\n"
    assert not out.exists()
