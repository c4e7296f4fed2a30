"""Tokens of a tiny hand-made session against a plain-Python computation of the same rules."""

from __future__ import annotations

import numpy as np
import pytest
from tokenize_helpers import SESSION_ROW, UNIT_ROWS, VEL_MEAN, VEL_STD, tiny_session, tiny_tokenizer

from popdecode.errors import UserError
from popdecode.tokenize.batch import SPIKE, UNIT_END, UNIT_START

WEIGHTS = {"hold": 0.1, "reach": 5.0, "return": 1.0}


def inside(session, name, t):
    return any(s <= t < e for s, e in session.intervals[name])


def expected_tokens(session, t0, length, kept):
    """Delimiters for each kept unit in session order, then kept units' spikes by time."""
    toks = []
    for u in kept:
        toks += [(UNIT_ROWS[u], UNIT_START, 0.0), (UNIT_ROWS[u], UNIT_END, length)]
    spikes = [(t, u) for t, u in zip(session.spike_times, session.spike_units) if t0 <= t < t0 + length and u in kept]
    toks += [(UNIT_ROWS[u], SPIKE, t - t0) for t, u in sorted(spikes)]
    return toks


def expected_outputs(session, t0, length):
    s = session.series["vel"]
    rows = []
    for t, v in zip(s.timestamps, s.values):
        if not t0 <= t < t0 + length:
            continue
        w = 1.0
        for name, wn in WEIGHTS.items():
            if inside(session, name, t):
                w = wn
        if inside(session, "outlier", t):
            w = 0.0
        ok = bool(np.all(np.isfinite(v)))
        value = (v - VEL_MEAN) / VEL_STD if ok else np.zeros(2)
        rows.append((t - t0, value, w if ok else 0.0, ok and inside(session, "eval", t)))
    return rows


def as_tuples(w):
    return list(zip(w.input_units.tolist(), w.input_types.tolist(), w.input_times.tolist()))


@pytest.mark.parametrize("t0", [0.95, 2.2, 4.5])
def test_tokens_match_plain_computation(t0):
    session, tokenizer = tiny_session(), tiny_tokenizer()
    w = tokenizer(session, t0)
    exp = expected_tokens(session, t0, 1.0, kept=[0, 1, 2, 3])
    assert len(w.input_units) == len(exp)
    got = as_tuples(w)
    for (gu, gt, gtime), (eu, et, etime) in zip(got, exp):
        assert (gu, gt) == (eu, et)
        assert gtime == pytest.approx(etime, abs=1e-6)
    assert w.input_units.dtype == np.int64 and w.input_types.dtype == np.int64
    assert w.input_times.dtype == np.float32
    assert w.session_index == SESSION_ROW and w.session_id == "tiny" and w.window_start == t0


def test_delimiter_layout_and_silent_unit():
    session, tokenizer = tiny_session(), tiny_tokenizer()
    w = tokenizer(session, 0.95)
    # [u0 start, u0 end, u1 start, ...]: the silent unit "d" (row 5) is still there.
    assert w.input_units[:8].tolist() == [7, 7, 3, 3, 9, 9, 5, 5]
    assert w.input_types[:8].tolist() == [1, 2] * 4
    assert w.input_times[:8].tolist() == [0.0, 1.0] * 4
    # 6 spikes in [0.95, 1.95): 0.99 c, 1.00 b, 1.05 b, 1.10 a, 1.5 c, 1.90 a
    assert w.input_units[8:].tolist() == [9, 3, 3, 7, 9, 7]
    assert (w.input_types[8:] == SPIKE).all()


@pytest.mark.parametrize("t0", [0.95, 2.2, 4.5])
def test_outputs_weights_masks_and_normalisation(t0):
    session, tokenizer = tiny_session(), tiny_tokenizer()
    w = tokenizer(session, t0)
    exp = expected_outputs(session, t0, 1.0)
    t = w.targets["vel"]
    assert list(w.targets) == ["vel"]  # "pos" is a model readout this session does not supervise
    assert (w.output_readout == 1).all()  # index of "vel" in the model's readouts
    assert t.index.tolist() == list(range(len(exp)))
    np.testing.assert_allclose(w.output_times, [e[0] for e in exp], atol=1e-6)
    np.testing.assert_allclose(t.values, np.stack([e[1] for e in exp]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(t.weights, np.array([e[2] for e in exp], dtype=np.float32))
    np.testing.assert_array_equal(t.eval_mask, [e[3] for e in exp])
    assert np.isfinite(t.values).all()


def test_nan_sample_and_outlier_window():
    t = tiny_tokenizer()(tiny_session(), 0.95).targets["vel"]
    # samples at 1.0 .. 1.9; 1.3 is NaN, 1.6 and 1.7 are outliers inside the reach
    assert t.weights.tolist() == [5, 5, 5, 0, 5, 5, 0, 0, 5, 5]
    assert t.eval_mask.tolist() == [True, True, True, False] + [True] * 6
    assert t.values[3].tolist() == [0.0, 0.0]


def test_session_without_eval_set_is_evaluated_everywhere():
    s = tiny_session()
    del s.intervals["eval"]
    assert tiny_tokenizer()(tiny_session(), 2.2).targets["vel"].eval_mask.tolist() == [True] * 3 + [False] * 7
    assert tiny_tokenizer()(s, 2.2).targets["vel"].eval_mask.tolist() == [True] * 10


def test_unit_dropout_only_with_rng_and_consistent_spikes():
    session = tiny_session()
    tok = tiny_tokenizer(unit_dropout=True, min_units=2, mode_units=3, max_units=5)
    assert as_tuples(tok(session, 0.95)) == as_tuples(tiny_tokenizer()(session, 0.95))  # no rng: no dropout
    sizes = set()
    for seed in range(40):
        w = tok(session, 0.95, rng=np.random.default_rng(seed))
        n_delim = int((w.input_types != SPIKE).sum()) // 2
        kept = [int(np.flatnonzero(UNIT_ROWS == r)[0]) for r in w.input_units[: 2 * n_delim : 2]]
        assert kept == sorted(kept) and len(kept) >= 2
        got = as_tuples(w)
        exp = expected_tokens(session, 0.95, 1.0, kept)
        assert [g[:2] for g in got] == [e[:2] for e in exp]
        sizes.add(len(kept))
    assert sizes == {2, 3, 4}  # floor(x) for x in [2, 5) capped at the 4 units


def test_fewer_units_than_min_keeps_all():
    session = tiny_session()
    tok = tiny_tokenizer(unit_dropout=True)  # min_units=30 > 4 units
    w = tok(session, 0.95, rng=np.random.default_rng(0))
    assert as_tuples(w) == as_tuples(tiny_tokenizer()(session, 0.95))


def test_unknown_session_is_a_user_error():
    session = tiny_session()
    tok = tiny_tokenizer(session_id="other")
    with pytest.raises(UserError, match="^session 'tiny' is not in the model's vocabulary; register its units and session first$"):
        tok(session, 0.0)


def test_readout_without_normalization_is_a_user_error():
    from popdecode.tokenize.tokenizer import Tokenizer

    with pytest.raises(UserError, match=r"^readouts \['vel'\] of session 's' have no normalization"):
        Tokenizer(unit_rows={"s": np.arange(3)}, session_rows={"s": 1}, readouts=["vel"], normalization={}, session_readouts={"s": ["vel"]})


def test_stored_session_gives_the_same_tokens(tmp_path):
    from popdecode.data.store import Store, write_session

    session = tiny_session()
    write_session(tmp_path / "store", session)
    stored = Store(tmp_path / "store").open("tiny")
    tok = tiny_tokenizer()
    for t0 in (0.95, 2.2, 4.5):
        a, b = tok(session, t0), tok(stored, t0)
        assert as_tuples(a) == as_tuples(b)
        np.testing.assert_array_equal(a.output_times, b.output_times)
        for field in ("index", "values", "weights", "eval_mask"):
            np.testing.assert_array_equal(getattr(a.targets["vel"], field), getattr(b.targets["vel"], field))


def test_end_queries_answer_the_windows_last_moments_in_training_only():
    session = tiny_session()
    plain = tiny_tokenizer()(session, 0.95, rng=np.random.default_rng(0)).targets["vel"]
    tok = tiny_tokenizer(end_queries=3, end_span=0.2)
    assert as_tuples(tok(session, 0.95)) == as_tuples(tiny_tokenizer()(session, 0.95))  # no rng: evaluation
    w = tok(session, 0.95, rng=np.random.default_rng(0))
    t = w.targets["vel"]
    n = len(plain.values)
    # the window's own samples first, unchanged; then 0.8, 0.9 and 1.0 s into the window
    np.testing.assert_array_equal(t.values[:n], plain.values)
    np.testing.assert_allclose(w.output_times[n:], [0.8, 0.9, 1.0], atol=1e-6)
    # answered by the behaviour interpolated at 1.75, 1.85, 1.95 s: halfway between two samples
    vel = session.series["vel"].values
    halfway = [(vel[17] + vel[18]) / 2, (vel[18] + vel[19]) / 2, (vel[19] + vel[20]) / 2]
    np.testing.assert_allclose(t.values[n:], (np.stack(halfway) - VEL_MEAN) / VEL_STD, rtol=1e-5)
    assert t.weights[n:].tolist() == [0.0, 5.0, 5.0]  # 1.75 is an outlier (1.6-1.8), the others reach


def test_end_only_trains_on_the_windows_end_alone():
    session = tiny_session()
    both = tiny_tokenizer(end_queries=3, end_span=0.2)(session, 0.95, rng=np.random.default_rng(0))
    only = tiny_tokenizer(end_queries=3, end_span=0.2, end_only=True)
    assert as_tuples(only(session, 0.95)) == as_tuples(tiny_tokenizer()(session, 0.95))  # evaluation: untouched
    w = only(session, 0.95, rng=np.random.default_rng(0))
    # the same three end queries and targets as with --end-queries, and nothing else
    np.testing.assert_allclose(w.output_times, both.output_times[-3:], atol=1e-6)
    for field in ("values", "weights"):
        np.testing.assert_array_equal(getattr(w.targets["vel"], field), getattr(both.targets["vel"], field)[-3:])
    assert w.targets["vel"].index.tolist() == [0, 1, 2]
