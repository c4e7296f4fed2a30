"""Which part of a new session counts as labelled, and a view of the session that trains on it.

Few-shot adaptation pretends that only the first N training trials of the new session come
with behaviour. This file turns that sentence into intervals, in three steps:

1. **Training trials** (:func:`training_trials`). The trials of the session that overlap a
   train interval long enough for one window (1 s), in time order; each is kept as its
   overlap with that interval (the *labelled piece*). Trials in shorter train intervals are
   skipped, because the trainer never tiles a window there either (spec section 4: train
   intervals shorter than a window are dropped), and a window reaching out of the train split
   would read spikes of the valid/test trials. The split's 1 s margins around valid and test
   trials make this matter: in the real monkey files (trials of ~0.5 s laid end to end) only
   about a third of the trials dealt to "train" lie in usable train intervals.
2. **The labelled set** (:func:`labelled_pieces`): the pieces of the first N training trials.
3. **Where windows go** (:func:`window_spans`). A trial is often shorter than a 1 s window.
   We keep 1 s windows (the model's clock and the evaluation's windows are 1 s long) and let
   each piece reach out to a full window *inside its train interval*: the piece [a, b) gets
   the span [max(b - 1, I.start), min(a + 1, I.end)) (the piece itself when it is longer),
   whose every 1 s tile contains the whole piece. The trainer tiles the spans from a random
   offset each epoch, so the trial shows up at a different place in its window every epoch.
   Samples outside the labelled pieces still enter the window as *input* (unlabelled spikes,
   as in evaluation, whose windows also reach past a short trial) but never as *targets*:
   they lie in the interval set ``unlabelled``, whose loss weight is 0.

:class:`LabelledSession` is the session seen through this lens: ``split("train")`` returns
the spans, ``intervals["unlabelled"]`` the complement of the pieces, and everything else
(spikes, behaviour, valid and test splits) is the session's own. The trainer needs nothing
more: it tiles ``split("train")`` and weighs the loss by interval sets.

Labelled data can also be counted in seconds (``--labelled-trials 60s``): the first 60 s of
the session's usable train intervals, in time order, whatever the trials. That is the only
few-shot measure a session without a trial table has (a rat running laps, a resting-state
recording); there, a trial count is refused and ``all`` means its whole train split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.errors import UserError

UNLABELLED = "unlabelled"  # interval-set name of what the loss must ignore (weight 0)
_EPS = 1e-9


# --- --labelled-trials ------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledSpec:
    """One value of ``--labelled-trials``: a count, a fraction of the training trials, seconds of
    the train split, or all."""

    count: int | None = None
    fraction: float | None = None
    seconds: float | None = None

    @property
    def is_all(self) -> bool:
        return self.count is None and self.fraction is None and self.seconds is None

    @property
    def label(self) -> str:
        if self.count is not None:
            return str(self.count)
        if self.fraction is not None:
            return f"{self.fraction:g}"
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return "all"

    def resolve(self, available: int) -> int:
        """How many of ``available`` training trials this asks for (at least 1, at most all)."""
        if self.count is not None:
            return min(self.count, available)
        if self.fraction is not None:
            return min(max(1, math.ceil(self.fraction * available)), available)
        return available


def parse_labelled_trials(text: str) -> list[LabelledSpec]:
    """``"5,10,0.5,30s,all"`` -> specs. Integers count trials, numbers with a point in (0, 1] are
    fractions of the training trials, a number followed by ``s`` is seconds of the train split,
    ``all`` is every training trial."""
    specs = []
    for item in [t.strip() for t in str(text).split(",")]:
        if item.lower() == "all":
            specs.append(LabelledSpec())
            continue
        try:
            if item.lower().endswith("s"):
                seconds = float(item[:-1])
                if not seconds > 0.0 or not math.isfinite(seconds):
                    raise UserError(f"--labelled-trials {item}: give a positive number of seconds, e.g. 60s")
                specs.append(LabelledSpec(seconds=seconds))
                continue
            if "." in item or "e" in item.lower():
                value = float(item)
                if value <= 0.0:
                    raise UserError(
                        f"--labelled-trials {item}: the labelled set would be empty; give at least 1 trial"
                    )
                if not value <= 1.0:
                    raise ValueError
                specs.append(LabelledSpec(fraction=value))
            else:
                value = int(item)
                if value < 1:
                    raise UserError(
                        f"--labelled-trials {item}: the labelled set would be empty; give at least 1 trial"
                    )
                specs.append(LabelledSpec(count=value))
        except ValueError:
            raise UserError(
                f"--labelled-trials: cannot read {item!r}; give trial counts (10), fractions of the "
                "training trials (0.25), seconds (60s) or 'all', separated by commas"
            ) from None
    if len({s.label for s in specs}) != len(specs):
        raise UserError(f"--labelled-trials {text}: a value is repeated; give each once")
    return specs


# --- trials -> intervals ----------------------------------------------------------------------

def usable_train(session, window_length: float = 1.0) -> Intervals:
    """The session's train intervals at least one window long (the ones the trainer tiles)."""
    train = session.split("train")
    keep = (train.end - train.start) >= window_length - _EPS
    return Intervals(train.start[keep], train.end[keep])


def training_trials(session, window_length: float = 1.0) -> Intervals | None:
    """Labelled pieces of every training trial, in time order (one interval per trial).

    Returns ``None`` when the session has no trial table. Pieces are *not* merged: trials laid
    end to end stay separate entries, so that counting them counts trials.
    """
    trials = session.trials
    if not trials or "start" not in trials or len(np.asarray(trials["start"])) == 0:
        return None
    start = np.asarray(trials["start"], dtype=np.float64)
    stop = np.asarray(trials["stop"], dtype=np.float64)
    usable = usable_train(session, window_length)
    starts, ends = [], []
    for i in np.argsort(start, kind="stable"):
        piece = usable.clip(start[i], stop[i])
        if len(piece) == 0:
            continue
        # A trial lies in one train interval (the split never cuts inside a trial's own
        # extent except at its ends), but take the longest overlap to be safe.
        j = int(np.argmax(piece.end - piece.start))
        starts.append(piece.start[j])
        ends.append(piece.end[j])
    return Intervals(np.array(starts), np.array(ends))


def first_seconds(intervals: Intervals, seconds: float) -> Intervals:
    """The first ``seconds`` of ``intervals`` (in time order; the last one cut where the time
    runs out)."""
    before = np.concatenate([[0.0], np.cumsum(intervals.end - intervals.start)])[:-1]
    keep = before < seconds - _EPS
    ends = np.minimum(intervals.end[keep], intervals.start[keep] + (seconds - before[keep]))
    return Intervals(intervals.start[keep], ends)


def labelled_pieces(session, spec: LabelledSpec, window_length: float = 1.0) -> Intervals:
    """The labelled set of ``session`` under ``spec`` (see the module docstring)."""
    if spec.seconds is not None:
        pieces = first_seconds(usable_train(session, window_length), spec.seconds)
        if len(pieces) == 0:
            raise UserError(
                f"session '{session.id}' has no labelled data: no train interval is at least "
                f"{window_length:g} s long; check its splits (popdecode inspect)"
            )
        return pieces
    trials = training_trials(session, window_length)
    if trials is None:
        if not spec.is_all:
            raise UserError(
                f"session '{session.id}' has no trial table, so --labelled-trials {spec.label} cannot "
                "pick trials; give seconds of its train split (e.g. 60s) or all"
            )
        pieces = usable_train(session, window_length)
    else:
        n = spec.resolve(len(trials))
        pieces = Intervals(trials.start[:n], trials.end[:n])
    if len(pieces) == 0:
        raise UserError(
            f"session '{session.id}' has no labelled data: no training trial lies in a train interval "
            f"of at least {window_length:g} s; check its splits (popdecode inspect)"
        )
    return pieces


def window_spans(session, pieces: Intervals, window_length: float = 1.0) -> Intervals:
    """Where the training windows of ``pieces`` may go: each piece widened to a full window
    inside its own train interval, overlapping spans merged."""
    usable = usable_train(session, window_length)
    w = window_length
    starts, ends = [], []
    for a, b in pieces:
        k = int(np.searchsorted(usable.start, a, side="right")) - 1
        lo, hi = float(usable.start[k]), float(usable.end[k])
        starts.append(min(a, max(b - w, lo)))
        ends.append(max(b, min(a + w, hi)))
    return Intervals.from_pairs(starts, ends)


# --- the view the trainer sees -------------------------------------------------------------

class LabelledSession:
    """``session`` restricted to labelled ``pieces`` for training (see the module docstring).

    ``no_valid=True`` also hides the valid split, so that the trainer keeps the last epoch
    instead of selecting on validation data a user with N labelled trials may not have.
    """

    def __init__(self, session, pieces: Intervals, *, window_length: float = 1.0, no_valid: bool = False):
        self.base = session
        self.pieces = pieces
        self.spans = window_spans(session, pieces, window_length)
        self.no_valid = bool(no_valid)
        domain = session.domain
        everything = Intervals(np.array([min(domain.start[0], self.spans.start[0]) - 1.0]),
                               np.array([max(domain.end[-1], self.spans.end[-1]) + 1.0]))
        intervals = dict(session.intervals)
        intervals[UNLABELLED] = everything.difference(pieces)
        self.intervals = intervals

    @property
    def num_pieces(self) -> int:
        return len(self.pieces)

    def split(self, name: str) -> Intervals:
        if name == "train":
            return self.spans
        if name == "valid" and self.no_valid:
            return Intervals.empty()
        return self.base.split(name)

    def __getattr__(self, name):
        # Everything else (id, spikes, series, window(), trials, ...) is the session's own.
        # Guarded so that unpickling (DataLoader workers), which looks attributes up before
        # __dict__ is filled, does not recurse.
        if name == "base" or "base" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"LabelledSession({self.base.id!r}, {len(self.pieces)} labelled pieces, {self.pieces.duration:.1f} s)"
