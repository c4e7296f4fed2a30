"""Self-training: the adapted model labels the rest of the new session, and adaptation runs again.

Ten labelled trials are a small part of a session's training split; the rest of it has spikes
but, in the few-shot setting, no behaviour. After one adaptation the model decodes that rest
reasonably well (on the simulator's held-out sessions its decoding of the unlabelled train
samples scores R^2 0.39-0.62). ``popdecode adapt --self-train K`` puts those decodings to
work, the classic self-training (pseudo-label) loop:

1. adapt on the labelled trials as usual (round 0);
2. decode the new session's whole train split with the result, and write the decoded
   behaviour in place of the unknown behaviour: every train sample outside the labelled
   trials (:func:`pseudo_labelled`); the labelled trials keep their true values, and the valid
   and test splits are never touched, so model selection and scoring stay honest;
3. adapt again, *from the pretrained model* (fresh rows, same recipe, same mode), on all
   training trials of that pseudo-labelled session; repeat from 2 for K rounds.

Starting each round from the pretrained model, not from the previous round's rows, keeps a
round from compounding its own errors step by step: it only inherits them through the labels.
Why it helps with few trials (BENCHMARKS.md, "Self-training"): the second round sees every
reach of the session, including the directions the ten labelled trials never covered, and a
label for each one that, while noisy, is consistent with the network's own readout. With
``unit-id`` every round trains only the new rows, so the frozen network stays bit for bit
the pretrained one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import sample_index
from popdecode.evaluate.predict import predict_split
from popdecode.train import setup


def pseudo_labelled(model, meta: dict, session, pieces: Intervals, *, device="cpu", precision: str = "fp32"):
    """``session`` with the behaviour of its train split, outside ``pieces``, replaced by what
    ``model`` decodes there (in original units; see the module docstring).

    Returns a new in-memory session; ``session`` is not modified. Readouts the model does not
    decode for this session are left as they are.
    """
    session = session.load()
    tokenizer = setup.make_tokenizer(model, [session], meta, train=False,
                                     window_length=float(model.config.window_length))
    stitched = predict_split(model, [session], tokenizer, split="train",
                             normalization=setup.normalization_from_meta(meta), device=device, precision=precision)
    series = dict(session.series)
    for (sid, name), decoded in stitched.items():
        if sid != session.id or name not in series:
            continue
        old = series[name]
        index = sample_index(old.timestamps, decoded.timestamps)
        unlabelled = (index >= 0) & ~pieces.contains(decoded.timestamps)
        values = old.values.copy()
        values[index[unlabelled]] = decoded.predictions[unlabelled]
        series[name] = dataclasses.replace(old, values=values)
    return dataclasses.replace(session, series=series)
