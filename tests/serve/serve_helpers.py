"""A session and a tiny untrained model that knows it, shared by the serve tests."""

from __future__ import annotations

import numpy as np
import torch

from popdecode.model import POYO, POYOConfig
from popdecode.train import setup
from train.easy_data import easy_session

TINY = POYOConfig(dim=32, depth=1, num_latents_per_step=4, cross_heads=1, self_heads=1, dim_head=16,
                  ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0)


def model_and_session(seconds: float = 30.0, units: int = 12):
    """(model, meta, session): a POYO with random weights registered on one easy session, and
    the meta (normalisation, readouts) a trained run would carry."""
    session = easy_session("live-0", seed=5, units=units, seconds=seconds)
    torch.manual_seed(0)
    model = POYO(config=TINY, readouts={"hand_vel": 2})
    setup.register_sessions(model, [session])
    norm = setup.compute_normalization([session], ["hand_vel"])
    meta = {"normalization": setup.normalization_to_meta(norm),
            "session_readouts": setup.session_readouts([session], ["hand_vel"])}
    return model.eval(), meta, session


def stream_order(session, *, chunks: int, seed: int = 0):
    """The session's spikes as a live stream would deliver them: cut into chunks, each chunk
    shuffled inside, every other chunk delivered one place late."""
    rng = np.random.default_rng(seed)
    parts = np.array_split(np.arange(len(session.spike_times)), chunks)
    order = list(range(chunks))
    for k in range(0, chunks - 1, 2):
        order[k], order[k + 1] = order[k + 1], order[k]
    for k in order:
        idx = rng.permutation(parts[k])
        yield session.spike_times[idx], session.spike_units[idx]
