"""Mixing weights that start from tuning (``popdecode adapt --mixture-start tuning``).

Why. Mixture rows (:class:`~popdecode.model.vocab.RowMixture`) start with zero logits: every
new unit begins as the *average* known unit, and the mixing weights must find, from the loss
on a few labelled trials alone, which known units each new one resembles. Yet those trials
already say much of that directly: how a unit's spike count moves with the behaviour, and how
often it fires.

What. For every new unit, :func:`~popdecode.train.unit_init.unit_tuning` on its labelled
trials (the correlation of its 50 ms spike count with each normalised readout dimension, and
its log rate); for every known unit the same on its session's train split (the model's
training sessions, opened from the stores its training recorded or from ``--prior-data``).
Both are standardised by the known units' spread, and each new unit's logits start at

    logit[new, known] = -|z_new - z_known|^2 / (2 * bandwidth^2)

over the features the new session has (its readouts and the rate), so each new unit begins
as a blend of the known units tuned like it. Training then moves the logits as before.
Known units whose session cannot be opened start at the lowest logit of each new unit's
row: they stay in the mixture, with little weight. A session being adapted is never a known
one, even when the stores given hold it.

Measured (BENCHMARKS.md, "Where new units start in unit identification"): the start alone
decodes (valid R^2 0.16-0.35 from 10 labelled trials, where the average unit gives -0.35 to
-0.02). On the simulator 30-step adaptations are better and steadier from it, but after 150
steps the result is the same, and a narrow kernel is worse. On a real monkey left out of
pretraining (a model whose rows started at random) 10-trial adaptation from it is 0.09 worse.
So ``adapt`` starts from the average unless asked.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from popdecode.data.intervals import Intervals
from popdecode.train.setup import normalization_from_meta, unit_names
from popdecode.train.unit_init import unit_tuning

MIXTURE_STARTS = ("mean", "tuning")
# In known units' standard deviations: the best start and seen-animal result of 0.25-4
# (BENCHMARKS.md, "Where new units start in unit identification").
DEFAULT_BANDWIDTH = 1.0


def _columns(model, session) -> np.ndarray:
    """Boolean mask over unit_tuning's columns: the readouts ``session`` decodes, and the rate."""
    mask = [name in session.targets for name, dim in model.readout_dims.items() for _ in range(dim)]
    return np.array(mask + [True])


def tuning_logits(model, meta: dict, new_sessions: Sequence, pieces: dict[str, Intervals], known_sessions: Sequence,
                  *, bandwidth: float = DEFAULT_BANDWIDTH) -> torch.Tensor:
    """Start logits ``[new rows, known rows]`` for the unit table's attached mixture (see the
    module docstring). ``meta``: the adapted model's metadata (its target normalisation);
    ``pieces``: the labelled intervals of each new session."""
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    mixture = model.unit_vocab.mixture
    norm, readouts = normalization_from_meta(meta), model.readout_dims
    width = sum(readouts.values()) + 1
    known_rows, new_rows = mixture.known_rows.cpu().numpy(), mixture.new_rows.cpu().numpy()
    known = np.full((model.unit_vocab.weight.shape[0], width), np.nan)  # table row -> features (NaN: not measured)
    for s in known_sessions:
        rows = model.unit_vocab.index(unit_names(s))
        if not np.isin(rows, new_rows).any():  # a session being adapted is not known
            known[rows] = unit_tuning(s, readouts, norm)
    known = known[known_rows]
    measured = np.isfinite(known).all(axis=1)
    if not measured.any():
        raise ValueError("tuning_logits: none of the known units' sessions was given")
    mean, std = known[measured].mean(axis=0), known[measured].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z_known = (known - mean) / std

    position = {int(r): i for i, r in enumerate(new_rows)}
    logits = np.zeros((len(new_rows), len(known_rows)))
    for s in new_sessions:
        cols = _columns(model, s)
        z_new = (unit_tuning(s, readouts, norm, within=pieces[s.id]) - mean) / std
        at = [position[int(r)] for r in model.unit_vocab.index(unit_names(s))]
        a, b = z_new[:, cols], np.nan_to_num(z_known[:, cols])
        d2 = np.maximum((a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2 * a @ b.T, 0.0)
        rows = -d2 / (2 * bandwidth**2)
        rows[:, ~measured] = np.nan
        low = np.nanmin(rows, axis=1, keepdims=True)
        logits[at] = np.where(np.isnan(rows), low, rows)
    return torch.as_tensor(logits, dtype=mixture.logits.dtype)


def start_from_tuning(model, meta: dict, new_sessions: Sequence, pieces: dict[str, Intervals], known_sessions: Sequence,
                      *, bandwidth: float = DEFAULT_BANDWIDTH) -> None:
    """Write :func:`tuning_logits` into the unit table's attached mixture."""
    logits = tuning_logits(model, meta, new_sessions, pieces, known_sessions, bandwidth=bandwidth)
    with torch.no_grad():
        model.unit_vocab.mixture.logits.copy_(logits.to(model.unit_vocab.mixture.logits.device))
