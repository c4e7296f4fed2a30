"""One baseline on one session: features, fit, choose on valid, score valid and test.

This is the whole protocol that makes a baseline number comparable with POYO's:

1. The samples: every finite sample of the target series in the train split (for fitting)
   and in the valid / test splits restricted to the ``eval`` mask (for choosing and
   scoring) -- the timestamps POYO's evaluation scores (see ``features.split_samples``).
2. The features: lagged spike counts ending at each sample (``features.lagged_counts``).
3. The fit: Wiener filter (penalty chosen on valid), MLP or GRU (early-stopped on valid).
4. The score: ``r2_score`` on valid and on test, per session, averaged over the target's
   dimensions, as one :class:`~popdecode.evaluate.results.ResultRow` per split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from popdecode.baselines.features import FeatureConfig, lagged_counts, split_samples
from popdecode.baselines.gru import GRUConfig, fit_gru
from popdecode.baselines.mlp import MLPConfig, fit_mlp
from popdecode.baselines.wiener import DEFAULT_ALPHAS, fit_wiener
from popdecode.errors import UserError
from popdecode.evaluate.metrics import r2_score
from popdecode.evaluate.results import ResultRow

MODELS = ("wiener", "mlp", "gru")


@dataclass
class BaselineResult:
    """What a baseline produced on one (session, target)."""

    rows: dict[str, ResultRow]  # split -> its row ("valid", "test")
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (timestamps, predicted values)
    details: dict = field(default_factory=dict)  # chosen hyperparameters, sample counts, seconds


def fit_baseline(
    session,
    target: str,
    *,
    model: str,
    features: FeatureConfig | None = None,
    alphas=DEFAULT_ALPHAS,
    mlp: MLPConfig | None = None,
    gru: GRUConfig | None = None,
    progress_bar=None,
) -> BaselineResult:
    """Fit baseline ``model`` ("wiener", "mlp" or "gru") on ``session`` and score valid and test.

    ``session`` is any object with the Session API (in memory or stored). Raises
    :class:`UserError` when the session lacks the target or has too few samples in a split.
    """
    if model not in MODELS:
        raise UserError(f"unknown baseline model {model!r}; choose one of {', '.join(MODELS)}")
    features = features or FeatureConfig()
    if target not in session.series:
        raise UserError(
            f"session {session.id} has no behaviour series {target!r} "
            f"(it has: {', '.join(sorted(session.series)) or 'none'}); pick another with --target"
        )
    start = time.perf_counter()
    samples = {
        "train": split_samples(session, target, "train", eval_mask=False),
        "valid": split_samples(session, target, "valid", eval_mask=True),
        "test": split_samples(session, target, "test", eval_mask=True),
    }
    for split, (ts, _) in samples.items():
        if len(ts) < 2:
            raise UserError(
                f"session {session.id} has {len(ts)} finite {target!r} samples in its {split} split"
                f"{'' if split == 'train' else ' inside the eval mask'}; a baseline needs at least 2 "
                "(check the session's splits, e.g. with `popdecode inspect`)"
            )
    X = {
        split: lagged_counts(session, ts, bin=features.bin, lags=features.lags, future=features.future)
        for split, (ts, _) in samples.items()
    }
    y = {split: values for split, (_, values) in samples.items()}
    feature_seconds = time.perf_counter() - start

    details: dict = {"model": model, "bin": features.bin, "lags": features.lags, "future": features.future,
                     "num_units": len(session.unit_ids),
                     "samples": {split: int(len(ts)) for split, (ts, _) in samples.items()}}
    if model == "wiener":
        fitted = fit_wiener(X["train"], y["train"], X["valid"], y["valid"], alphas=alphas)
        details["alpha"] = fitted.alpha
        details["alpha_at_grid_edge"] = fitted.alpha in (min(alphas), max(alphas)) and len(alphas) > 1
    elif model == "mlp":
        fitted = fit_mlp(X["train"], y["train"], X["valid"], y["valid"], mlp, progress_bar=progress_bar)
        details["best_epoch"], details["epochs_run"] = fitted.best_epoch, len(fitted.history)
    else:
        fitted = fit_gru(X["train"], y["train"], X["valid"], y["valid"], num_bins=features.num_bins,
                         config=gru, progress_bar=progress_bar)
        details["best_epoch"], details["epochs_run"] = fitted.best_epoch, len(fitted.history)

    rows, predictions = {}, {}
    for split in ("valid", "test"):
        pred = fitted.predict(X[split])
        predictions[split] = (samples[split][0], pred)
        with np.errstate(over="ignore", divide="ignore"):  # a target constant on the split gives -inf
            r2 = r2_score(y[split], pred)
        rows[split] = ResultRow(
            method=model, split=split, session=session.id, readout=target, r2=r2, n_timestamps=int(len(pred)),
        )
    details["feature_seconds"] = round(feature_seconds, 3)
    details["seconds"] = round(time.perf_counter() - start, 3)
    return BaselineResult(rows=rows, predictions=predictions, details=details)
