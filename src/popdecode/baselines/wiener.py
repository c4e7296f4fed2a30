"""The Wiener filter: linear regression from lagged spike counts to behaviour, with ridge.

A Wiener filter predicts behaviour as a weighted sum of the spike counts in the last few
bins, y(t) = b + sum_{k,u} w[k,u] * count[u, t - k]. With hundreds of units and ten lags it
has thousands of weights and few training samples, so the weights are shrunk towards zero
(ridge regression) by a penalty ``alpha`` chosen on the validation split.

The fit is closed form. Features are standardised with the training mean and standard
deviation (so one penalty treats every unit and lag alike) and the intercept is left
unpenalised by centring the targets. Then

    (X'X + alpha I) w = X'y.

One eigendecomposition X'X = V diag(lam) V' serves every alpha of the grid:
w(alpha) = V diag(1 / (lam + alpha)) V' X'y. Directions with lam + alpha numerically zero
get weight zero, which at alpha = 0 is the minimum-norm least-squares solution.

With more features than samples (hundreds of units x ten lags, a few hundred training
samples) the smaller matrix XX' [N, N] is decomposed instead: if XX' u = lam u then
v = X'u / sqrt(lam) is an eigenvector of X'X with the same eigenvalue, and X'y has no
component outside these, so the solution is the same and much cheaper to get.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from popdecode.baselines.selection import standardise, validation_score

# Penalties tried on the validation split; standardised features put X'X's diagonal at the
# number of training samples, so the grid spans far below to far above it.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 19))


@dataclass
class WienerModel:
    """A fitted ridge decoder: ``predict(X) = ((X - mean) / scale) @ weights + intercept``."""

    mean: np.ndarray  # [P] training feature means
    scale: np.ndarray  # [P] training feature standard deviations (1 where constant)
    weights: np.ndarray  # [P, D] on standardised features
    intercept: np.ndarray  # [D]
    alpha: float  # the chosen penalty
    valid_scores: dict[float, float] = field(default_factory=dict)  # penalty -> validation score

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return (Xs @ self.weights + self.intercept).astype(np.float32)


def fit_wiener(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    *,
    alphas=DEFAULT_ALPHAS,
) -> WienerModel:
    """Fit ridge regression on the training samples, choosing ``alpha`` by R^2 on valid.

    ``X_*`` are [N, P] features (e.g. :func:`~popdecode.baselines.features.lagged_counts`),
    ``y_*`` are [N, D] targets. With one alpha, the validation data are optional. Ties in
    validation score (R^2, see :func:`~popdecode.baselines.selection.validation_score`) go
    to the larger penalty (the simpler model).
    """
    alphas = [float(a) for a in np.atleast_1d(alphas)]
    if not alphas or min(alphas) < 0:
        raise ValueError("alphas must be a non-empty list of non-negative penalties")
    if len(alphas) > 1 and (X_valid is None or y_valid is None):
        raise ValueError("choosing among several alphas needs X_valid and y_valid")
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if len(X) != len(y) or len(X) < 2:
        raise ValueError(f"need at least two training samples with matching X and y, got {len(X)} and {len(y)}")

    mean, scale = standardise(X)
    Xs = (X - mean) / scale
    y_mean = y.mean(axis=0)
    if len(Xs) >= Xs.shape[1]:
        lam, V = np.linalg.eigh(Xs.T @ Xs)
        lam = np.clip(lam, 0.0, None)  # round-off can make zero eigenvalues slightly negative
    else:
        lam, U = np.linalg.eigh(Xs @ Xs.T)
        keep = lam > 1e-10 * max(float(lam.max()), 1.0)
        lam = lam[keep]
        V = (Xs.T @ U[:, keep]) / np.sqrt(lam)
    rhs = V.T @ (Xs.T @ (y - y_mean))  # [K, D], X'y in the eigenbasis
    tiny = 1e-10 * max(float(lam.max(initial=0.0)), 1.0)

    def eigen_weights(alpha: float) -> np.ndarray:
        """The solution in the eigenbasis: rhs / (lam + alpha), zero where that is singular."""
        denom = lam + alpha
        safe = np.where(denom > tiny, denom, 1.0)
        return np.where(denom > tiny, 1.0 / safe, 0.0)[:, None] * rhs

    scores: dict[float, float] = {}
    if len(alphas) == 1:
        best = alphas[0]
    else:
        y_v = np.asarray(y_valid, dtype=np.float64)
        if y_v.ndim == 1:
            y_v = y_v[:, None]
        # Project the validation features once; each alpha is then a small product.
        Xv = ((np.asarray(X_valid, dtype=np.float64) - mean) / scale) @ V
        for a in alphas:
            scores[a] = validation_score(y_v, Xv @ eigen_weights(a) + y_mean)
        finite = {a: s for a, s in scores.items() if np.isfinite(s)}
        best = max(finite, key=lambda a: (finite[a], a)) if finite else max(alphas)
    return WienerModel(
        mean=mean, scale=scale, weights=V @ eigen_weights(best), intercept=y_mean,
        alpha=best, valid_scores=scores,
    )
