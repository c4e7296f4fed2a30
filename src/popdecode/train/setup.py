"""From sessions to what a model needs around it: vocabularies, readouts, normalisation, tokenizer.

Training, evaluation and adaptation all start the same way, so the steps live here once:

1. :func:`select_sessions` keeps the sessions whose ids match ``--sessions`` glob patterns
   and none of ``--exclude-sessions``.
2. :func:`readout_dims` collects the readouts to decode (every session's ``targets``) and
   their widths; :func:`session_readouts` says which readouts each session supervises.
3. :func:`compute_normalization` measures mean and standard deviation of every readout over
   the training split, so the model learns targets of unit scale; they are saved with the
   model (``model.json`` ``meta["normalization"]``) and undone on the way out.
4. :func:`register_sessions` adds one unit-table row per ``f"{session_id}/{unit_id}"`` and
   one session-table row per session (existing rows are kept, bit for bit).
5. :func:`make_tokenizer` builds the :class:`~popdecode.tokenize.tokenizer.Tokenizer` that
   maps those rows, for training (unit dropout, loss weights) or evaluation.

``meta`` is the JSON-able dict saved beside the weights; everything here reads and writes
plain lists so that it round-trips through ``model.json``.
"""

from __future__ import annotations

import fnmatch
from typing import Sequence

import numpy as np

from popdecode.errors import UserError
from popdecode.tokenize.tokenizer import Tokenizer, TokenizerConfig


def unit_names(session) -> list[str]:
    """Global unit names of a session: units never correspond across sessions."""
    return [f"{session.id}/{u}" for u in session.unit_ids]


def select_sessions(sessions: Sequence, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list:
    """Sessions whose id matches one of ``include`` (all when empty) and none of ``exclude``.

    A pattern that matches no session is a :class:`UserError` (a typo should not silently
    train on nothing), as is a selection that leaves no session.
    """
    ids = [s.id for s in sessions]
    for pattern in list(include) + list(exclude):
        if not fnmatch.filter(ids, pattern):
            shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
            raise UserError(f"no session matches '{pattern}'; sessions in the data: {shown}")
    chosen = [
        s for s in sessions
        if (not include or any(fnmatch.fnmatchcase(s.id, p) for p in include))
        and not any(fnmatch.fnmatchcase(s.id, p) for p in exclude)
    ]
    if not chosen:
        raise UserError("the session filters leave no session; loosen --sessions / --exclude-sessions")
    return chosen


def readout_dims(sessions: Sequence) -> dict[str, int]:
    """Readout name -> output width, over every session's targets, in first-seen order."""
    dims: dict[str, int] = {}
    for s in sessions:
        if not s.targets:
            raise UserError(f"session '{s.id}' has no target series to decode; prepare it with --target NAME")
        for name in s.targets:
            if name not in s.series:
                raise UserError(f"session '{s.id}' names target '{name}' but has no such series; re-run popdecode prepare")
            dim = int(s.series[name].dim)
            if dims.setdefault(name, dim) != dim:
                raise UserError(
                    f"readout '{name}' is {dims[name]}-D in one session and {dim}-D in '{s.id}'; "
                    "give the series different names or train on one kind"
                )
    return dims


def session_readouts(sessions: Sequence, readouts: Sequence[str]) -> dict[str, list[str]]:
    """Session id -> the model readouts it supervises (its targets, in model order)."""
    return {s.id: [r for r in readouts if r in s.targets] for s in sessions}


def compute_normalization(sessions: Sequence, readouts: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-readout (mean, std) over the finite samples inside each session's train split.

    Sessions without a train split contribute all their samples only when no session has
    one. A dimension with zero spread gets std 1 (it is constant; nothing to scale).
    """
    out = {}
    for name in readouts:
        chunks, fallback = [], []
        for s in sessions:
            if name not in s.targets:
                continue
            series = s.series[name]
            values = np.asarray(series.values, dtype=np.float64)
            train = s.split("train")
            if len(train):
                chunks.append(values[train.contains(series.timestamps)])
            else:
                fallback.append(values)
        values = np.concatenate(chunks or fallback or [np.zeros((0, 1))])
        values = values[np.isfinite(values).all(axis=1)]
        if len(values) < 2:
            raise UserError(f"readout '{name}' has fewer than 2 finite training samples; check the data and its splits")
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        out[name] = (mean.astype(np.float32), std.astype(np.float32))
    return out


def normalization_to_meta(norm: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    return {k: {"mean": np.asarray(m).tolist(), "std": np.asarray(s).tolist()} for k, (m, s) in norm.items()}


def normalization_from_meta(meta: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        k: (np.asarray(v["mean"], dtype=np.float32), np.asarray(v["std"], dtype=np.float32))
        for k, v in meta.get("normalization", {}).items()
    }


def register_sessions(model, sessions: Sequence) -> None:
    """Give every unit and session a row (rows already present keep their values)."""
    for s in sessions:
        model.unit_vocab.add(unit_names(s), exist_ok=True)
    model.session_vocab.add([s.id for s in sessions], exist_ok=True)


def make_tokenizer(
    model,
    sessions: Sequence,
    meta: dict,
    *,
    train: bool,
    unit_dropout: bool = True,
    loss_weights: dict[str, float] | None = None,
    window_length: float = 1.0,
    end_queries: int = 0,
    end_span: float = 0.1,
    end_only: bool = False,
) -> Tokenizer:
    """The tokenizer for ``sessions`` under ``model``'s vocabularies and ``meta``'s normalisation.

    ``meta["session_readouts"]`` says what each session supervises; sessions not listed
    (e.g. evaluated for the first time) supervise the model readouts among their targets.
    """
    norm = normalization_from_meta(meta)
    readouts = list(model.readout_names)
    known = meta.get("session_readouts", {})
    sup = {}
    for s in sessions:
        names = known.get(s.id, [r for r in readouts if r in s.targets])
        missing = [r for r in names if r not in s.series]
        if missing:
            raise UserError(
                f"session '{s.id}' has no series {missing[0]!r}, which the model decodes for it; "
                f"series in the data: {', '.join(s.series) or 'none'}"
            )
        sup[s.id] = list(names)
    cfg = TokenizerConfig(window_length=window_length, unit_dropout=bool(train and unit_dropout),
                          end_queries=end_queries if train else 0, end_span=end_span, end_only=end_only and train)
    if loss_weights is not None:
        cfg.loss_weights = dict(loss_weights)
    return Tokenizer(
        unit_rows={s.id: model.unit_vocab.index(unit_names(s)) for s in sessions},
        session_rows={s.id: int(model.session_vocab.index([s.id])[0]) for s in sessions},
        readouts=readouts,
        normalization=norm,
        session_readouts=sup,
        config=cfg,
    )
