"""Recording: file round trip, and R^2 of interpolated and held ticks against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.errors import UserError
from popdecode.serve.recording import Recording


def sample_recording():
    rec = Recording(columns=["x", "y"], attrs={"session": "s", "rate": 50.0})
    ticks = np.arange(0, 4, 0.02)
    for t in ticks:
        if 2.0 < t < 2.5 or 1.5 < t < 1.55:
            continue  # input lost: no ticks (and two ticks skipped at 1.5, which are bridged)
        rec.add_tick(t, [np.sin(t), 2 * t], pushed=t + 0.001, arrival=t - 0.0005, model_s=0.0004, tokens=7)
    truth_t = np.arange(0.005, 4, 0.01)
    truth = np.stack([np.sin(truth_t) + 0.1 * np.cos(7 * truth_t), 2 * truth_t, (truth_t > 1).astype(float)], axis=1)
    rec.add_truth(truth_t[200:], truth[200:])  # out of order on purpose
    rec.add_truth(truth_t[:200], truth[:200])
    return rec, ticks, truth_t, truth


def test_score_interpolates_between_ticks_and_skips_gaps():
    rec, ticks, truth_t, truth = sample_recording()
    r2, n = rec.score()
    # by hand: flagged samples (t > 1) whose two neighbouring ticks exist (not in the gap 2.0-2.5,
    # not after the last tick 3.98); the decoded value there is the line between the ticks
    kept = rec.ticks["time"].tolist()
    keep, yhat = [], []
    for t in truth_t:
        before = max((k for k in kept if k <= t), default=None)
        after = min((k for k in kept if k >= t), default=None)
        ok = t > 1 and before is not None and after is not None and after - before <= 0.25
        keep.append(ok)
        if ok:
            w = 0.0 if after == before else (t - before) / (after - before)
            yhat.append([(1 - w) * np.sin(before) + w * np.sin(after), 2 * t])
    keep, yhat = np.array(keep), np.array(yhat)
    assert not keep[(truth_t > 2.02) & (truth_t < 2.48)].any() and keep[(truth_t > 1.5) & (truth_t < 1.55)].all()
    y = truth[keep, :2]
    ss = ((y - yhat) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert n == keep.sum()
    assert r2 == pytest.approx(float(np.mean(1 - ss)), abs=1e-6)


def test_held_score_takes_the_newest_sample_pushed_before_each():
    rec, ticks, truth_t, truth = sample_recording()
    r2, n = rec.score(held=True)
    # by hand: what task software holds at t is the tick pushed last by then (pushed 1 ms after
    # it decodes), if that tick is at most 0.25 s old
    kept = rec.ticks["time"].tolist()
    keep, yhat = [], []
    for t in truth_t:
        last = max((k for k in kept if k + 0.001 <= t), default=None)
        ok = t > 1 and last is not None and t - last <= 0.25
        keep.append(ok)
        if ok:
            yhat.append([np.sin(last), 2 * last])
    keep, yhat = np.array(keep), np.array(yhat)
    assert keep[(truth_t > 2.02) & (truth_t < 2.24)].all() and not keep[(truth_t > 2.26) & (truth_t < 2.5)].any()
    y = truth[keep, :2]
    ss = ((y - yhat) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert n == keep.sum()
    assert r2 == pytest.approx(float(np.mean(1 - ss)), abs=1e-6)
    assert r2 < rec.score()[0]  # the held value lags: below the interpolated one


def test_file_round_trip(tmp_path):
    rec, *_ = sample_recording()
    rec.save(tmp_path / "r.h5")
    back = Recording.load(tmp_path / "r.h5")
    assert back.columns == ["x", "y"] and back.attrs["session"] == "s"
    for k, v in rec.ticks.items():
        np.testing.assert_array_equal(back.ticks[k], v)
    np.testing.assert_array_equal(back.decoded, rec.decoded)
    np.testing.assert_array_equal(back.truth[1], rec.truth[1])
    assert back.score() == rec.score()
    rec.figure(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_unreadable_files_say_so(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="cannot read recording"):
        Recording.load(tmp_path / "bad.h5")
    with pytest.raises(UserError, match="record with --truth"):
        Recording(columns=["x"]).figure(tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
