"""Make room in a trained model for sessions it has never seen.

A new session brings neurons the model has no embedding for, and a session embedding of its
own (spec section 6). Before any training:

1. :func:`check_new_sessions` refuses what cannot work, each with one line saying why:
   a session that decodes none of the model's readouts (naming the readouts it has), a
   readout of a different width, and a session already in the vocabulary (unless the user
   asks to reuse its rows, e.g. to adapt it again with more trials).
2. :func:`add_rows` appends one unit row per ``session/unit`` and one session row per session
   (drawn from N(0, 0.02) like every embedding, spec section 1), keeping every existing row
   bit for bit, and returns the boolean row masks of what adaptation may change: the rows of
   the new sessions, and nothing else.
3. :func:`adapted_meta` extends the model's saved metadata: which readouts the new sessions
   supervise, and, for a model whose metadata has no target normalisation (one converted
   from torch-brain), a normalisation measured on the new sessions' labelled samples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from popdecode.data.intervals import Intervals
from popdecode.errors import UserError
from popdecode.train import setup


def new_session_readouts(model, session) -> list[str]:
    """The model readouts ``session`` can supervise: its targets first, else any series of the
    same name. A :class:`UserError` when there is none or a width differs."""
    names = list(model.readout_names)
    chosen = [r for r in names if r in session.targets] or [r for r in names if r in session.series]
    if not chosen:
        raise UserError(
            f"session '{session.id}' has none of the readouts the model decodes ({', '.join(names)}); "
            f"its series: {', '.join(session.series) or 'none'}; prepare it with --target naming one of the readouts"
        )
    for r in chosen:
        dim, want = int(session.series[r].dim), int(model.readout_dims[r])
        if dim != want:
            raise UserError(
                f"series '{r}' of session '{session.id}' is {dim}-D but the model's readout '{r}' is {want}-D; "
                "adapt with a session recording the same behaviour"
            )
    return chosen


def check_new_sessions(model, sessions: Sequence, *, reuse: bool = False) -> dict[str, list[str]]:
    """Session id -> readouts it supervises; refuses unusable or already-known sessions."""
    known = set(model.session_vocab.names)
    out = {}
    for s in sessions:
        if s.id in known and not reuse:
            raise UserError(
                f"session '{s.id}' is already in the model's vocabulary; pass --reuse-session to train "
                "its existing rows again, or adapt to a session the model has not seen"
            )
        out[s.id] = new_session_readouts(model, s)
    return out


def add_rows(model, sessions: Sequence) -> dict[str, torch.Tensor]:
    """Give every unit and session of ``sessions`` a row; the row masks of those rows.

    Returns ``{"unit_vocab.weight": bool [rows], "session_vocab.weight": bool [rows]}``: True for
    the rows that belong to ``sessions`` (new, or reused ones already present).
    """
    setup.register_sessions(model, sessions)
    units = np.zeros(model.unit_vocab.weight.shape[0], dtype=bool)
    sess = np.zeros(model.session_vocab.weight.shape[0], dtype=bool)
    for s in sessions:
        units[model.unit_vocab.index(setup.unit_names(s))] = True
        sess[model.session_vocab.index([s.id])] = True
    return {"unit_vocab.weight": torch.from_numpy(units), "session_vocab.weight": torch.from_numpy(sess)}


def labelled_normalization(sessions: Sequence, pieces: dict[str, Intervals], readouts: Sequence[str]) -> dict:
    """Per-readout (mean, std) over the labelled samples of ``sessions`` (as in training)."""
    out = {}
    for name in readouts:
        chunks = []
        for s in sessions:
            if name in s.series and s.id in pieces:
                series = s.series[name]
                values = np.asarray(series.values, dtype=np.float64)
                chunks.append(values[pieces[s.id].contains(series.timestamps)])
        values = np.concatenate(chunks) if chunks else np.zeros((0, 1))
        values = values[np.isfinite(values).all(axis=1)]
        if len(values) < 2:
            raise UserError(f"readout '{name}' has fewer than 2 finite labelled samples; label more trials")
        std = values.std(axis=0)
        out[name] = (values.mean(axis=0).astype(np.float32),
                     np.where(std > 1e-12, std, 1.0).astype(np.float32))
    return out


def adapted_meta(meta: dict, sessions: Sequence, readouts: dict[str, list[str]], pieces: dict[str, Intervals]) -> dict:
    """``meta`` of the pretrained model, extended for ``sessions`` (see the module docstring)."""
    meta = {k: v for k, v in meta.items() if k not in ("best", "train_config")}
    meta["session_readouts"] = {**meta.get("session_readouts", {}), **readouts}
    norm = setup.normalization_from_meta(meta)
    needed = sorted({r for names in readouts.values() for r in names} - set(norm))
    if needed:
        norm.update(labelled_normalization(sessions, pieces, needed))
        meta["normalization"] = setup.normalization_to_meta(norm)
        meta["normalization_from_adaptation"] = needed
    if "sessions" in meta:  # what the model was trained on before (fit records the new ones)
        earlier = meta.get("pretrained_sessions", [])
        meta["pretrained_sessions"] = earlier + [s for s in meta.pop("sessions") if s not in earlier]
    return meta
