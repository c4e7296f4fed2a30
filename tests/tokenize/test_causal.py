"""Causal windows and the tokenizer's queries=: one window per sample, ending at it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.errors import UserError
from popdecode.model import POYO, POYOConfig
from popdecode.tokenize.causal import causal_windows
from popdecode.train import setup
from train.easy_data import easy_session


def test_one_window_per_split_sample_ending_at_it():
    s = easy_session("c", seed=1, seconds=30.0)
    test = s.split("test")
    windows = causal_windows([s], [test], {"c": ["hand_vel"]}, window_length=1.0)
    ts = s.series["hand_vel"].timestamps
    expected = ts[(ts >= test.start[0]) & (ts < test.end[0])] if len(test) == 1 else ts[test.contains(ts)]
    assert [w[2]["hand_vel"][0] for w in windows] == expected.tolist()
    assert all(si == 0 and t0 == pytest.approx(q["hand_vel"][0] - 1.0) for si, t0, q in windows)


def test_a_delay_moves_each_window_later_by_it():
    s = easy_session("c", seed=1, seconds=30.0)
    plain = causal_windows([s], [s.split("test")], {"c": ["hand_vel"]}, window_length=1.0)
    late = causal_windows([s], [s.split("test")], {"c": ["hand_vel"]}, window_length=1.0, delay=0.08)
    assert [q["hand_vel"][0] for _, _, q in late] == [q["hand_vel"][0] for _, _, q in plain]
    assert [t0 for _, t0, _ in late] == pytest.approx([t0 + 0.08 for _, t0, _ in plain])
    for bad in (-0.01, 1.0):
        with pytest.raises(ValueError, match="delay must be in"):
            causal_windows([s], [s.split("test")], {"c": ["hand_vel"]}, window_length=1.0, delay=bad)


def test_queries_answer_the_given_times_with_their_recorded_targets():
    s = easy_session("c", seed=1, seconds=30.0)
    model = POYO(config=POYOConfig(dim=32, depth=1, num_latents_per_step=4, cross_heads=1, self_heads=1, dim_head=16),
                 readouts={"hand_vel": 2})
    setup.register_sessions(model, [s])
    meta = {"normalization": setup.normalization_to_meta(setup.compute_normalization([s], ["hand_vel"]))}
    tok = setup.make_tokenizer(model, [s], meta, train=False)
    sample = s.series["hand_vel"].timestamps[1234]
    w = tok(s, sample - 1.0, queries={"hand_vel": np.array([sample, sample + 0.0042])})
    plain = tok(s, sample - 1.0)
    np.testing.assert_array_equal(w.input_units, plain.input_units)  # same spikes [t - 1, t)
    np.testing.assert_allclose(w.output_times, [1.0, 1.0042], atol=1e-6)
    mean, std = setup.normalization_from_meta(meta)["hand_vel"]
    np.testing.assert_allclose(w.targets["hand_vel"].values[0], (s.series["hand_vel"].values[1234] - mean) / std, rtol=1e-6)
    assert w.targets["hand_vel"].weights[1] == 0 and not w.targets["hand_vel"].eval_mask[1]  # no sample there
    assert sample not in (plain.output_times + plain.window_start)  # the half-open window leaves it out
    with pytest.raises(UserError, match="does not supervise"):
        tok(s, 0.0, queries={"position": np.array([1.0])})
