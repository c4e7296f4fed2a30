"""The GRU reads lagged bins as a sequence and learns a history-dependent mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.baselines.gru import GRUConfig, fit_gru
from popdecode.baselines.training import TrainConfig
from popdecode.evaluate.metrics import r2_score

BINS, UNITS = 6, 5


def _filtered(n, seed):
    """y = tanh of an exponentially weighted history of two units (newest bin weighs most)."""
    rng = np.random.default_rng(seed)
    seq = rng.poisson(2.0, size=(n, BINS, UNITS)).astype(np.float32)  # oldest bin first
    decay = 0.6 ** np.arange(BINS)[::-1]  # newest bin (last) has weight 1
    drive = ((seq[:, :, 0] - seq[:, :, 1]) * decay).sum(1) / 2.0
    y = np.stack([np.tanh(drive), (seq[:, :, 2] * decay).sum(1)], axis=1)
    return seq.reshape(n, BINS * UNITS), y.astype(np.float32)


def test_gru_learns_history_mapping():
    torch.set_num_threads(1)
    X_tr, y_tr = _filtered(3000, 0)
    X_va, y_va = _filtered(500, 1)
    X_te, y_te = _filtered(1000, 2)
    cfg = GRUConfig(hidden=32, layers=1, dropout=0.0, train=TrainConfig(epochs=30, patience=5, lr=5e-3, batch_size=128))
    model = fit_gru(X_tr, y_tr, X_va, y_va, num_bins=BINS, config=cfg)
    assert r2_score(y_te, model.predict(X_te)) > 0.8
    # Seeded: the same run gives the same predictions.
    again = fit_gru(X_tr, y_tr, X_va, y_va, num_bins=BINS, config=cfg)
    np.testing.assert_array_equal(model.predict(X_te), again.predict(X_te))


def test_gru_reads_bins_in_time_order():
    # The network sees [B, bins, units]: reversing the bins must change what it computes.
    X, y = _filtered(4, 3)
    cfg = GRUConfig(hidden=8, train=TrainConfig(epochs=1, batch_size=4))
    model = fit_gru(X, y, X, y, num_bins=BINS, config=cfg)
    seq = torch.from_numpy(X).reshape(4, BINS, UNITS)
    _, h = model.net.gru(seq)
    direct = model.net.readout(h[-1])
    torch.testing.assert_close(model.net(torch.from_numpy(X)), direct)


def test_gru_rejects_features_that_do_not_split_into_bins():
    X, y = _filtered(10, 4)
    with pytest.raises(ValueError, match="30 features do not split into 7 bins"):
        fit_gru(X, y, X, y, num_bins=7)
