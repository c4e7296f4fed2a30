"""The MLP learns a mapping a linear decoder cannot, and training is seeded and early-stopped."""

from __future__ import annotations

import numpy as np
import torch

from popdecode.baselines.mlp import MLPConfig, fit_mlp
from popdecode.baselines.training import TrainConfig
from popdecode.baselines.wiener import fit_wiener
from popdecode.evaluate.metrics import r2_score


def _xor_like(n, seed):
    """Targets that depend on the product and square of counts: no linear signal at all."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(3.0, size=(n, 20)).astype(np.float32)
    a, b = (X[:, 0] - 3) / np.sqrt(3), (X[:, 1] - 3) / np.sqrt(3)
    y = np.stack([a * b, a ** 2 - 1], axis=1) + 0.1 * rng.normal(size=(n, 2))
    return X, y.astype(np.float32)


def _config(**train):
    return MLPConfig(hidden=64, layers=2, dropout=0.0, train=TrainConfig(epochs=40, patience=6, lr=3e-3, batch_size=128, **train))


def test_mlp_learns_nonlinear_mapping_that_wiener_cannot():
    torch.set_num_threads(1)
    X_tr, y_tr = _xor_like(3000, 0)
    X_va, y_va = _xor_like(500, 1)
    X_te, y_te = _xor_like(1000, 2)
    model = fit_mlp(X_tr, y_tr, X_va, y_va, _config())
    assert r2_score(y_te, model.predict(X_te)) > 0.8
    linear = fit_wiener(X_tr, y_tr, X_va, y_va, alphas=[1.0, 100.0])
    assert r2_score(y_te, linear.predict(X_te)) < 0.2


def test_training_is_seeded_and_keeps_the_best_epoch():
    torch.set_num_threads(1)
    X_tr, y_tr = _xor_like(600, 3)
    X_va, y_va = _xor_like(200, 4)
    cfg = MLPConfig(hidden=16, layers=1, dropout=0.1, train=TrainConfig(epochs=6, patience=2, batch_size=64, seed=7))
    a = fit_mlp(X_tr, y_tr, X_va, y_va, cfg)
    b = fit_mlp(X_tr, y_tr, X_va, y_va, cfg)
    np.testing.assert_array_equal(a.predict(X_va), b.predict(X_va))
    assert a.history == b.history
    # The returned weights are the best epoch's: their valid R^2 is the maximum of the history.
    assert a.valid_score == max(a.history)
    assert a.history[a.best_epoch - 1] == a.valid_score
    np.testing.assert_allclose(r2_score(y_va, a.predict(X_va)), a.valid_score, atol=1e-5)
    # Early stopping: never more than `patience` epochs after the best one.
    assert len(a.history) <= a.best_epoch + 2
    c = fit_mlp(X_tr, y_tr, X_va, y_va, MLPConfig(hidden=16, layers=1, dropout=0.1,
                train=TrainConfig(epochs=6, patience=2, batch_size=64, seed=8)))
    assert not np.array_equal(a.predict(X_va), c.predict(X_va))
