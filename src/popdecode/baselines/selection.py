"""Training statistics and the score that picks hyperparameters on the validation split.

Both are shared by every baseline: features and targets are standardised with the training
split's mean and standard deviation, and hyperparameters (the Wiener penalty, the epoch at
which the MLP or GRU stops) are those with the best :func:`validation_score`.
"""

from __future__ import annotations

import numpy as np


def standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``X``; constant columns get scale 1."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def validation_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R^2 averaged over the output dimensions that vary on the validation samples.

    This is :func:`~popdecode.evaluate.metrics.r2_score` except that a dimension constant
    on the validation split (e.g. a rat resting for the whole valid block) is left out
    instead of turning the mean into -inf, which would make every candidate look equally
    bad. With no varying dimension it falls back to minus the mean squared error.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    ss_res = np.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    varies = ss_tot > 1e-12 * max(len(y_true), 1)
    if not varies.any():
        return -float(np.mean(ss_res)) / max(len(y_true), 1)
    return float(np.mean(1.0 - ss_res[varies] / ss_tot[varies]))
