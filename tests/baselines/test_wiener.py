"""The Wiener filter against closed-form least squares computed another way."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.baselines.wiener import fit_wiener
from popdecode.evaluate.metrics import r2_score


def _data(n=400, p=12, d=2, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.uniform(0.5, 4.0, p), size=(n, p)).astype(np.float64)
    W = rng.normal(size=(p, d))
    y = X @ W + 3.0 + noise * rng.normal(size=(n, d))
    return X, y


def test_alpha_zero_is_ordinary_least_squares():
    X, y = _data()
    model = fit_wiener(X, y, alphas=[0.0])
    A = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    X_new, _ = _data(seed=1)
    np.testing.assert_allclose(model.predict(X_new), np.hstack([X_new, np.ones((len(X_new), 1))]) @ coef, rtol=1e-4, atol=1e-4)


def test_given_alpha_equals_normal_equations_on_standardised_features():
    X, y = _data()
    alpha = 37.0
    model = fit_wiener(X, y, alphas=[alpha])
    # Separately: standardise, centre y, solve the normal equations, unpenalised intercept.
    mu, sd = X.mean(0), X.std(0)
    Z = (X - mu) / sd
    w = np.linalg.solve(Z.T @ Z + alpha * np.eye(X.shape[1]), Z.T @ (y - y.mean(0)))
    np.testing.assert_allclose(model.weights, w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.intercept, y.mean(0))
    X_new, _ = _data(seed=2)
    np.testing.assert_allclose(model.predict(X_new), ((X_new - mu) / sd) @ w + y.mean(0), rtol=1e-5, atol=1e-5)


def test_constant_feature_is_harmless():
    X, y = _data()
    X[:, 3] = 0.0  # a silent unit
    model = fit_wiener(X, y, alphas=[0.0])
    A = np.hstack([np.delete(X, 3, axis=1), np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    np.testing.assert_allclose(model.predict(X), A @ coef, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.weights[3], 0.0, atol=1e-9)


def test_penalty_chosen_by_validation_r2():
    # Few samples, many useless features: a large penalty must win on held-out data.
    rng = np.random.default_rng(3)
    n, p = 60, 50
    X = rng.normal(size=(2 * n, p))
    y = X[:, :1] * 1.0 + rng.normal(size=(2 * n, 1)) * 2.0
    alphas = [0.0, 1.0, 10.0, 100.0, 1000.0]
    model = fit_wiener(X[:n], y[:n], X[n:], y[n:], alphas=alphas)
    # Independent: fit each alpha alone and score it.
    scores = {a: r2_score(y[n:], fit_wiener(X[:n], y[:n], alphas=[a]).predict(X[n:])) for a in alphas}
    assert model.alpha == max(scores, key=scores.get)
    assert model.alpha > 1.0
    for a in alphas:
        assert model.valid_scores[a] == pytest.approx(scores[a], abs=1e-5)
    np.testing.assert_allclose(model.predict(X[n:]), fit_wiener(X[:n], y[:n], alphas=[model.alpha]).predict(X[n:]), rtol=1e-5)


def test_bad_arguments():
    X, y = _data()
    with pytest.raises(ValueError, match="needs X_valid and y_valid"):
        fit_wiener(X, y, alphas=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        fit_wiener(X, y, alphas=[-1.0])
    with pytest.raises(ValueError, match="at least two training samples"):
        fit_wiener(X[:1], y[:1], alphas=[1.0])


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_more_features_than_samples(alpha):
    # 40 samples, 90 features: the fit goes through XX' [40, 40] instead of X'X [90, 90].
    X, y = _data(n=40, p=90, seed=4)
    model = fit_wiener(X, y, alphas=[alpha])
    mu, sd = X.mean(0), X.std(0)
    Z = (X - mu) / sd
    if alpha > 0:
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(90), Z.T @ (y - y.mean(0)))
    else:
        w = np.linalg.pinv(Z) @ (y - y.mean(0))  # minimum-norm least squares
    np.testing.assert_allclose(model.weights, w, rtol=1e-6, atol=1e-8)
    if alpha == 0:
        np.testing.assert_allclose(model.predict(X), y, rtol=1e-4, atol=1e-4)  # interpolates


def test_validation_score_skips_constant_dimensions():
    from popdecode.baselines.selection import validation_score

    rng = np.random.default_rng(5)
    y = np.stack([rng.normal(size=50), np.full(50, 2.0)], axis=1)
    pred = y + 0.1 * rng.normal(size=y.shape)
    assert validation_score(y, pred) == pytest.approx(r2_score(y[:, :1], pred[:, :1]))
    assert r2_score(y, pred) == -np.inf or r2_score(y, pred) < -1e6  # what the plain mean gives
    flat = np.full((50, 1), 2.0)
    assert validation_score(flat, flat + 0.5) == pytest.approx(-0.25)
