"""The per-session protocol: which timestamps are scored, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.baselines.features import FeatureConfig, lagged_counts
from popdecode.baselines.run import fit_baseline
from popdecode.baselines.wiener import fit_wiener
from popdecode.data.intervals import Intervals
from popdecode.errors import UserError
from popdecode.evaluate.metrics import r2_score

from .synthetic import make_session


def test_scored_timestamps_are_the_split_samples_inside_the_eval_mask():
    session = make_session(num_trials=20, nan_every=11)
    result = fit_baseline(session, "hand_vel", model="wiener", features=FeatureConfig(bin=0.05, lags=4))
    series = session.series["hand_vel"]
    for split in ("valid", "test"):
        # Independent: trial by trial, the second half (eval), finite samples only.
        iv, ev = session.split(split), session.intervals["eval"]
        expected = [t for t, v in zip(series.timestamps, series.values)
                    if any(a <= t < b for a, b in iv) and any(a <= t < b for a, b in ev) and np.isfinite(v).all()]
        ts, pred = result.predictions[split]
        np.testing.assert_array_equal(ts, expected)
        assert result.rows[split].n_timestamps == len(expected) == len(pred)
        assert result.rows[split].split == split and result.rows[split].method == "wiener"
    assert result.rows["test"].r2 > 0.8


def test_wiener_row_equals_a_fit_done_by_hand():
    session = make_session(num_trials=20)
    feats = FeatureConfig(bin=0.05, lags=4, future=1)
    result = fit_baseline(session, "hand_vel", model="wiener", features=feats, alphas=[10.0])
    s = session.series["hand_vel"]
    def xy(split, use_eval):
        keep = session.split(split).contains(s.timestamps)
        if use_eval:
            keep &= session.intervals["eval"].contains(s.timestamps)
        return lagged_counts(session, s.timestamps[keep], bin=0.05, lags=4, future=1), s.values[keep]
    model = fit_wiener(*xy("train", False), alphas=[10.0])
    X_te, y_te = xy("test", True)
    assert result.rows["test"].r2 == pytest.approx(r2_score(y_te, model.predict(X_te)), abs=1e-9)
    assert result.details["alpha"] == 10.0


def test_errors_name_the_session_and_the_fix():
    session = make_session(num_trials=10)
    with pytest.raises(UserError, match=r"^session s0 has no behaviour series 'pos' \(it has: hand_vel\); pick another with --target$"):
        fit_baseline(session, "pos", model="wiener")
    with pytest.raises(UserError, match="unknown baseline model 'lstm'; choose one of wiener, mlp, gru"):
        fit_baseline(session, "hand_vel", model="lstm")
    session.intervals["test"] = Intervals.empty()
    with pytest.raises(UserError, match="^session s0 has 0 finite 'hand_vel' samples in its test split inside the eval mask; "):
        fit_baseline(session, "hand_vel", model="wiener")
