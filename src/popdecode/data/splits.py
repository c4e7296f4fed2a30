"""Train / valid / test splits of a session (spec section 4).

Three cases, in this order of preference:

1. **The source already carries a split** (brainsets' ``train_domain`` / ``valid_domain``
   / ``test_domain``, imported as the ``train``/``valid``/``test`` interval sets, or a
   trials column ``split`` holding ``train``/``valid``/``test``): it is kept.
2. **The session has trials**: the valid trials (all of them unless a boolean column
   ``is_valid`` or ``valid`` says otherwise) are shuffled with a seeded generator and
   dealt 70 / 10 / 20 to train / valid / test. The valid and test intervals are those
   trials themselves. A ``split`` column records each trial's share ("" for trials that
   are not valid).
3. **No trials** (e.g. free foraging): the observation intervals are cut into equal time
   blocks of about 60 s (shorter when the session is under 10 minutes, so that there are
   at least 10 blocks) and the blocks are dealt 70 / 10 / 20 the same way.

In every case, **train is the whole domain minus the valid and test intervals, each
widened by 1 s on both sides**: the margin keeps a 1 s training window from overlapping
the data it is evaluated on.

The shuffle is seeded by ``seed`` and the session id together, so the same seed gives the
same split every time, and sessions with the same number of trials are not dealt alike.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import SPLITS, Session

FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}
MARGIN_SECONDS = 1.0
BLOCK_SECONDS = 60.0
MIN_BLOCKS = 10


def _deal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 'train'/'valid'/'test' for n items, 10 % valid and 20 % test, shuffled."""
    n_valid = int(round(FRACTIONS["valid"] * n))
    n_test = int(round(FRACTIONS["test"] * n))
    labels = np.array(["valid"] * n_valid + ["test"] * n_test + ["train"] * (n - n_valid - n_test), dtype=object)
    return labels[rng.permutation(n)].astype(str)


def _train_from(domain: Intervals, valid: Intervals, test: Intervals, margin: float) -> Intervals:
    return domain.difference(valid.union(test).widen(margin))


def _valid_trial_mask(trials: dict[str, np.ndarray], n: int) -> np.ndarray:
    for col in ("is_valid", "valid"):
        if col in trials and np.asarray(trials[col]).dtype.kind == "b":
            return np.asarray(trials[col], dtype=bool)
    return np.ones(n, dtype=bool)


def time_blocks(domain: Intervals, block_seconds: float = BLOCK_SECONDS) -> Intervals:
    """The domain cut into equal blocks of about ``block_seconds`` (at least 10 blocks)."""
    block = min(block_seconds, domain.duration / MIN_BLOCKS) if domain.duration > 0 else block_seconds
    starts, ends = [], []
    for a, b in domain:
        n = max(1, int(round((b - a) / block)))
        edges = np.linspace(a, b, n + 1)
        starts.extend(edges[:-1])
        ends.extend(edges[1:])
    return Intervals(np.array(starts), np.array(ends))


def assign_splits(
    session: Session,
    *,
    seed: int = 0,
    margin: float = MARGIN_SECONDS,
    block_seconds: float = BLOCK_SECONDS,
) -> Session:
    """A copy of ``session`` with ``train``/``valid``/``test`` interval sets (see module doc)."""
    intervals = dict(session.intervals)
    if all(name in intervals for name in SPLITS):
        return session
    domain = session.domain
    rng = np.random.default_rng([seed, zlib.crc32(session.id.encode())])
    trials = session.trials
    n_trials = len(trials["start"]) if trials and "start" in trials else 0

    if n_trials:
        trials = dict(trials)
        start, stop = np.asarray(trials["start"], float), np.asarray(trials["stop"], float)
        if "split" in trials:
            labels = np.asarray(trials["split"]).astype(str)
        else:
            labels = np.full(n_trials, "", dtype=object)
            valid_mask = _valid_trial_mask(trials, n_trials)
            labels[valid_mask] = _deal(int(valid_mask.sum()), rng)
            labels = labels.astype(str)
            trials["split"] = labels
        pieces = {
            name: Intervals.from_pairs(start[labels == name], stop[labels == name]).intersect(domain)
            for name in ("valid", "test")
        }
    else:
        blocks = time_blocks(domain, block_seconds)
        labels = _deal(len(blocks), rng)
        pieces = {
            name: Intervals.from_pairs(blocks.start[labels == name], blocks.end[labels == name])
            for name in ("valid", "test")
        }

    intervals["valid"] = pieces["valid"]
    intervals["test"] = pieces["test"]
    intervals["train"] = _train_from(domain, pieces["valid"], pieces["test"], margin)
    return dataclasses.replace(session, intervals=intervals, trials=trials)
