"""Stitching averages exactly the predictions that land on the same sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenize_helpers import VEL_MEAN, VEL_STD, tiny_session, tiny_tokenizer

from popdecode.data.intervals import Intervals
from popdecode.tokenize.collate import collate
from popdecode.tokenize.sampler import EvalWindowSampler
from popdecode.tokenize.stitch import Stitcher

TRIAL = Intervals([0.35], [2.05])  # evaluated interval: windows reach past both ends


def fake_predictions(batch):
    """Prediction of a query = its window's start (both columns): overlaps then differ."""
    win = torch.repeat_interleave(torch.arange(batch.size), batch.output_lengths)
    starts = torch.from_numpy(batch.window_starts)[win].float()
    return starts[:, None].repeat(1, 2)


def stitched(masked=True, normalization=None, batch_size=3):
    session, tok = tiny_session(), tiny_tokenizer()
    wins = list(EvalWindowSampler(intervals=[TRIAL]))
    st = Stitcher(intervals={"tiny": TRIAL}, normalization=normalization)
    windows = [tok(session, t0) for _, t0 in wins]
    for i in range(0, len(windows), batch_size):
        batch = collate(windows[i : i + batch_size])
        st.add(batch, fake_predictions(batch))
    return session, wins, st.result("tiny", "vel", masked=masked)


def test_average_over_windows_matches_plain_computation():
    session, wins, res = stitched(masked=False)
    ts = session.series["vel"].timestamps
    expected_t = [t for t in ts if TRIAL.contains(np.array([t]))[0]]
    np.testing.assert_allclose(res.timestamps, expected_t, atol=1e-9)
    for t, p, c in zip(res.timestamps, res.predictions, res.counts):
        starts = [t0 for _, t0 in wins if t0 <= t + 1e-9 < t0 + 1.0]
        assert c == len(starts)
        assert p[0] == pytest.approx(np.mean(starts), abs=1e-6)
    assert res.counts.max() == 3  # windows at 0.35, 0.85, 1.05 all see 1.1 .. 1.3


def test_eval_mask_filter_and_targets():
    session, _, all_ = stitched(masked=False)
    _, _, masked = stitched(masked=True)
    # eval set is [1.0, 2.5) and the sample at 1.3 is NaN
    keep = (all_.timestamps >= 1.0 - 1e-6) & ~np.isclose(all_.timestamps, 1.3)  # float32 query times
    np.testing.assert_array_equal(all_.eval_mask, keep)
    np.testing.assert_allclose(masked.timestamps, all_.timestamps[keep])
    s = session.series["vel"]
    idx = np.abs(s.timestamps[None] - masked.timestamps[:, None]).argmin(axis=1)  # nearest sample
    np.testing.assert_allclose(masked.targets, (s.values[idx] - VEL_MEAN) / VEL_STD, rtol=1e-6)


def test_normalization_restores_units_and_batching_does_not_matter():
    _, _, a = stitched(normalization={"vel": (VEL_MEAN, VEL_STD)}, batch_size=1)
    _, _, b = stitched(batch_size=4)
    np.testing.assert_allclose(a.predictions, b.predictions * VEL_STD + VEL_MEAN, rtol=1e-6)
    session = tiny_session()
    s = session.series["vel"]
    idx = np.abs(s.timestamps[None] - a.timestamps[:, None]).argmin(axis=1)
    np.testing.assert_allclose(a.targets, s.values[idx], rtol=1e-5)


def test_dict_predictions_and_missing_key():
    session, tok = tiny_session(), tiny_tokenizer()
    batch = collate([tok(session, 1.0), tok(session, 1.5)])
    st = Stitcher()
    st.add(batch, {"vel": batch.targets["vel"].values})  # a perfect prediction
    res = st.result("tiny", "vel")
    np.testing.assert_allclose(res.predictions, res.targets)
    assert st.keys() == [("tiny", "vel")]
    with pytest.raises(KeyError):
        st.result("tiny", "pos")
