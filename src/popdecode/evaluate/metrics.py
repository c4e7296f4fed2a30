"""R^2 as the field reports it (spec section 7).

R^2 is computed per session over all of its evaluation timestamps, once per output
dimension, and averaged over dimensions; the headline number is the mean over sessions.
"""

from __future__ import annotations

import numpy as np


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination averaged over output dimensions.

    ``y_true`` and ``y_pred`` are [T] or [T, D]. Each dimension gets
    1 - sum((y - yhat)^2) / sum((y - mean(y))^2); the result is their mean. NaN rows are
    ignored. Returns NaN when fewer than two rows remain.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: {y_true.shape} vs {y_pred.shape}")
    keep = np.isfinite(y_true).all(axis=1) & np.isfinite(y_pred).all(axis=1)
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) < 2:
        return float("nan")
    ss_res = np.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    ss_tot = np.where(ss_tot > 0, ss_tot, np.finfo(np.float64).tiny)
    return float(np.mean(1.0 - ss_res / ss_tot))
