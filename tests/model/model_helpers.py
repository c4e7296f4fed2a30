"""Tiny models and synthetic packed batches shared by the model tests."""

from __future__ import annotations

import numpy as np
import torch

from popdecode.model import POYO, POYOConfig
from popdecode.tokenize.batch import Batch

TINY = POYOConfig(dim=32, depth=2, num_latents_per_step=4, cross_heads=1, self_heads=2, dim_head=16,
                  ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0)


def tiny_model(readouts=None, sessions=("s0", "s1"), units=10, seed=0) -> POYO:
    torch.manual_seed(seed)
    model = POYO(config=TINY, readouts=readouts or {"hand_vel": 2})
    for s in sessions:
        model.unit_vocab.add([f"{s}/{u}" for u in range(units)])
    model.session_vocab.add(list(sessions))
    return model.eval()


def random_batch(model: POYO, lengths, out_lengths, *, seed=0, sessions=None, readouts=None) -> Batch:
    """A packed batch: window b has lengths[b] tokens of its session's units, out_lengths[b] queries."""
    rng = np.random.default_rng(seed)
    names = model.session_vocab.names
    sessions = sessions or [names[b % len(names)] for b in range(len(lengths))]
    units, types, times, otimes, oread = [], [], [], [], []
    for b, (n, m) in enumerate(zip(lengths, out_lengths)):
        rows = model.unit_vocab.index([u for u in model.unit_vocab.names if u.startswith(sessions[b] + "/")])
        units.append(rng.choice(rows, n))
        types.append(rng.integers(0, 3, n))
        times.append(rng.random(n).astype(np.float32))
        otimes.append(np.sort(rng.random(m)).astype(np.float32))
        r = 0 if readouts is None else readouts[b]
        oread.append(np.full(m, r))
    cat = lambda xs, dt: torch.from_numpy(np.concatenate(xs)).to(dt)  # noqa: E731
    return Batch(
        input_units=cat(units, torch.int64), input_types=cat(types, torch.int64), input_times=cat(times, torch.float32),
        input_lengths=torch.tensor(lengths), session_index=torch.from_numpy(model.session_vocab.index(sessions)),
        output_times=cat(otimes, torch.float32), output_lengths=torch.tensor(out_lengths),
        output_readout=cat(oread, torch.int64), session_ids=list(sessions),
    )


def window(batch: Batch, b: int) -> Batch:
    """Window b of a packed batch, alone."""
    i0 = int(batch.input_lengths[:b].sum()); i1 = i0 + int(batch.input_lengths[b])
    o0 = int(batch.output_lengths[:b].sum()); o1 = o0 + int(batch.output_lengths[b])
    return Batch(
        input_units=batch.input_units[i0:i1], input_types=batch.input_types[i0:i1], input_times=batch.input_times[i0:i1],
        input_lengths=batch.input_lengths[b : b + 1], session_index=batch.session_index[b : b + 1],
        output_times=batch.output_times[o0:o1], output_lengths=batch.output_lengths[b : b + 1],
        output_readout=batch.output_readout[o0:o1],
    )
