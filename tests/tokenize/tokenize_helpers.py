"""A tiny hand-made session and a tokenizer for it, shared by the tokenize tests.

(A plain module, not a conftest: ``from conftest import`` would be ambiguous with tests/conftest.py.)
"""

from __future__ import annotations

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.tokenize.tokenizer import Tokenizer, TokenizerConfig

# Rows of the 4 units in the model's global unit table: deliberately not 0..3 nor sorted.
UNIT_ROWS = np.array([7, 3, 9, 5])
SESSION_ROW = 2
VEL_MEAN, VEL_STD = np.array([1.0, -2.0]), np.array([2.0, 4.0])


def tiny_session(session_id: str = "tiny") -> Session:
    # Spikes by unit (absolute seconds); unit "d" never fires.
    by_unit = {0: [0.05, 1.10, 1.90, 3.3], 1: [1.00, 1.05, 1.999, 2.0, 4.2], 2: [0.99, 1.5, 2.5]}
    times = np.concatenate([np.array(v) for v in by_unit.values()])
    units = np.concatenate([np.full(len(v), k) for k, v in by_unit.items()])
    order = np.argsort(times, kind="stable")
    ts = np.round(np.arange(0.0, 5.0, 0.1), 10)
    vel = np.stack([np.sin(ts), ts**2], axis=1).astype(np.float32)
    vel[13] = [np.nan, 1.0]  # t = 1.3: a missing sample inside reach
    pos = np.cos(ts)[:, None].astype(np.float32)
    return Session(
        id=session_id,
        spike_times=times[order],
        spike_units=units[order],
        unit_ids=["a", "b", "c", "d"],
        series={"vel": Series(ts, vel), "pos": Series(ts, pos)},
        targets=["vel"],
        intervals={
            "hold": Intervals([0.0], [1.0]),
            "reach": Intervals([1.0], [2.5]),
            "return": Intervals([2.5], [3.0]),
            "outlier": Intervals([1.6], [1.8]),  # inside reach: the outlier must win
            "eval": Intervals([1.0], [2.5]),
            "train": Intervals([0.0, 3.0], [2.6, 5.0]),
        },
    )


def tiny_tokenizer(session_id: str = "tiny", **config) -> Tokenizer:
    return Tokenizer(
        unit_rows={session_id: UNIT_ROWS},
        session_rows={session_id: SESSION_ROW},
        readouts=["pos", "vel"],
        normalization={"vel": (VEL_MEAN, VEL_STD), "pos": (np.zeros(1), np.ones(1))},
        session_readouts={session_id: ["vel"]},
        config=TokenizerConfig(**config),
    )
