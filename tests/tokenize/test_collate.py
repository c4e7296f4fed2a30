"""Packing windows into a batch and unpacking it gives back every window."""

from __future__ import annotations

import numpy as np
import torch
from tokenize_helpers import UNIT_ROWS, VEL_MEAN, VEL_STD, tiny_session

from popdecode.tokenize.collate import collate, uncollate
from popdecode.tokenize.tokenizer import Tokenizer


def two_session_tokenizer():
    # session "a" supervises vel, session "b" pos and vel: readout queries interleave in the batch
    return Tokenizer(
        unit_rows={"a": UNIT_ROWS, "b": UNIT_ROWS + 10},
        session_rows={"a": 1, "b": 2},
        readouts=["pos", "vel"],
        normalization={"vel": (VEL_MEAN, VEL_STD), "pos": (np.zeros(1), np.ones(1))},
        session_readouts={"a": ["vel"], "b": ["vel", "pos"]},
    )


def windows():
    tok = two_session_tokenizer()
    a, b = tiny_session("a"), tiny_session("b")
    return [tok(a, 0.95), tok(b, 2.2), tok(a, 4.5), tok(b, 0.1)]


def test_packed_layout():
    ws = windows()
    batch = collate(ws)
    assert batch.input_lengths.tolist() == [len(w.input_units) for w in ws]
    assert batch.output_lengths.tolist() == [len(w.output_times) for w in ws]
    assert batch.session_index.tolist() == [1, 2, 1, 2]
    assert batch.session_ids == ["a", "b", "a", "b"]
    np.testing.assert_array_equal(batch.window_starts, [0.95, 2.2, 4.5, 0.1])
    assert torch.equal(batch.input_units, torch.from_numpy(np.concatenate([w.input_units for w in ws])))
    for r, name in enumerate(["pos", "vel"]):
        t = batch.targets[name]
        # targets[r].index = positions of the packed queries answering readout r, ascending
        assert t.index.tolist() == torch.nonzero(batch.output_readout == r).flatten().tolist()
        assert t.values.shape == (len(t.index), 1 if name == "pos" else 2)
    # session "b" windows put "pos" (readout 0) before "vel" within the window
    b_out = batch.output_readout[batch.output_lengths[0] : batch.output_lengths[:2].sum()]
    assert b_out.tolist() == sorted(b_out.tolist())
    assert batch.input_units.dtype == torch.int64 and batch.input_times.dtype == torch.float32


def test_round_trip():
    ws = windows()
    back = uncollate(collate(ws))
    assert len(back) == len(ws)
    for w, v in zip(ws, back):
        assert (w.session_id, w.session_index, w.window_start) == (v.session_id, v.session_index, v.window_start)
        for field in ("input_units", "input_types", "input_times", "output_times", "output_readout"):
            np.testing.assert_array_equal(getattr(w, field), getattr(v, field))
        assert set(w.targets) == set(v.targets)
        for name, t in w.targets.items():
            u = v.targets[name]
            for field in ("index", "values", "weights", "eval_mask"):
                np.testing.assert_array_equal(getattr(t, field), getattr(u, field))
