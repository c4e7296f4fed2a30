"""OnlineDecoder: the tokens and predictions of offline causal evaluation, from a messy stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.errors import UserError
from popdecode.evaluate.predict import predict_split
from popdecode.serve.online_decoder import OnlineDecoder
from popdecode.train import setup
from serve.serve_helpers import model_and_session, stream_order


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(1)
    return model_and_session()


def decoder(parts, **kw):
    model, meta, session = parts
    return OnlineDecoder(model, session.id, normalization=setup.normalization_from_meta(meta),
                         session_readouts=meta["session_readouts"], **kw)


def test_tokens_are_the_tokenizers(parts):
    model, meta, session = parts
    dec = decoder(parts)
    dec.push(session.spike_times, session.spike_units)
    tok = setup.make_tokenizer(model, [session], meta, train=False)
    for t in (1.0, 7.3, 12.55, 29.99):
        units, types, times = dec.tokens(t)
        ref = tok(session, t - 1.0)
        np.testing.assert_array_equal(units, ref.input_units)
        np.testing.assert_array_equal(types, ref.input_types)
        np.testing.assert_allclose(times, ref.input_times, atol=1e-6)


@pytest.mark.parametrize("delay", [0.0, 0.06])
def test_decode_equals_causal_evaluation(parts, delay):
    """decode(t + delay) on a stream against `evaluate --causal [--delay]` (batched, padded
    forward) at the same samples t."""
    model, meta, session = parts
    tok = setup.make_tokenizer(model, [session], meta, train=False)
    offline = predict_split(model, [session], tok, split="test", normalization=setup.normalization_from_meta(meta),
                            batch_size=16, causal=True, delay=delay)[(session.id, "hand_vel")]
    dec = decoder(parts, delay=delay)
    for times, units in stream_order(session, chunks=300):
        dec.push(times, units)
    # the stream has been delivered in full: decode the test samples in time order
    pick = np.linspace(0, len(offline.timestamps) - 1, 40).astype(int)
    live = np.stack([dec.decode(t + delay) for t in offline.timestamps[pick]])
    np.testing.assert_allclose(live, offline.predictions[pick], rtol=1e-4, atol=1e-4)
    assert sum(dec.dropped.values()) == 0


def test_bad_spikes_are_dropped_and_counted_not_raised(parts):
    model, meta, session = parts
    clean, messy = decoder(parts), decoder(parts)
    clean.push(session.spike_times, session.spike_units)
    n = len(session.spike_times)
    times = np.concatenate([session.spike_times, session.spike_times[:50], [np.nan, np.inf, 3.0, 3.0]])
    units = np.concatenate([session.spike_units, session.spike_units[:50], [0, 1, 99, -1]])
    assert messy.push(times, units) == n
    assert messy.dropped == {"unknown_unit": 2, "invalid_time": 2, "too_old": 0, "duplicate": 50, "overflow": 0}
    np.testing.assert_array_equal(messy.decode(20.0), clean.decode(20.0))
    # once 20.0 is decoded, a spike from before 19.0 can no longer enter any window
    assert messy.push([5.0, 19.5], [0, 0]) == 1 and messy.dropped["too_old"] == 1
    assert messy.received == len(times) + 2


def test_a_burst_beyond_the_buffer_drops_the_oldest(parts):
    model, meta, session = parts
    dec = decoder(parts, capacity=500)
    burst = np.sort(np.random.default_rng(1).uniform(9.0, 10.0, 5000))  # ~10x a window's spikes
    dec.push(burst, np.zeros(5000, dtype=np.int64))
    assert dec.dropped["overflow"] == 4500
    dec.decode(10.0)
    assert dec.last_tokens == 500


def test_unknown_session_and_readout_say_what_to_do(parts):
    model, meta, session = parts
    with pytest.raises(UserError, match="is not in the model.*popdecode adapt"):
        OnlineDecoder(model, "nope")
    with pytest.raises(UserError, match="readout 'speed' is not one of the model's: hand_vel"):
        OnlineDecoder(model, session.id, readout="speed")
    with pytest.raises(UserError, match=r"^--delay must be at least 0 and shorter than the 1 s window \(got 1\)$"):
        OnlineDecoder(model, session.id, delay=1.0)


def test_push_keeps_and_counts_what_a_spike_by_spike_reference_does(parts):
    """Chunks of every kind (in order, shuffled, with unknown units, NaN or infinite times,
    spikes older than the last window, repeats) against the rules applied one spike at a time."""
    model, meta, session = parts
    dec = decoder(parts)
    n_units = len(dec.unit_ids)
    rng = np.random.default_rng(3)
    held: set[tuple[float, int]] = set()
    counts = dict.fromkeys(["unknown_unit", "invalid_time", "too_old", "duplicate"], 0)
    horizon, t = -np.inf, 1.0
    for k in range(200):
        times = np.round(np.sort(rng.uniform(t - 0.02, t, rng.integers(1, 40))), 5)
        units = rng.integers(0, n_units, len(times))
        kind, where = k % 6, [0, len(times) - 1, len(times) // 2][(k // 6) % 3]  # ends matter most
        if kind == 1:
            order = rng.permutation(len(times))
            times, units = times[order], units[order]
        elif kind == 2:
            units[where] = [-1, n_units, 10 * n_units][(k // 18) % 3]
        elif kind == 3:
            times[where] = [-np.inf, np.nan, np.inf][(k // 18) % 3]  # k = 3: -inf first, before any tick
        elif kind == 4:
            times[0] = horizon - 0.5 if np.isfinite(horizon) else times[0]
        elif kind == 5 and held:
            old = sorted(held)[-3:]
            times = np.concatenate([times, [p[0] for p in old]])
            units = np.concatenate([units, [p[1] for p in old]])
        for s_t, s_u in zip(times.tolist(), units.tolist()):  # the rules, one spike at a time
            if not 0 <= s_u < n_units:
                counts["unknown_unit"] += 1
            elif not np.isfinite(s_t):
                counts["invalid_time"] += 1
            elif s_t < horizon:
                counts["too_old"] += 1
            elif (s_t, s_u) in held:
                counts["duplicate"] += 1
            else:
                held.add((s_t, s_u))
        dec.push(times, units)
        if k % 5 == 4:  # a tick: the window [t - 1, t) is read, older spikes are forgotten
            dec.tokens(t)
            horizon = max(horizon, t - 1.0)
            held = {p for p in held if p[0] >= horizon}
        t += 0.02
    assert {k: dec.dropped[k] for k in counts} == counts and dec.dropped["overflow"] == 0
    assert min(counts.values()) > 0  # every rule was exercised
    pairs = sorted(held)
    np.testing.assert_array_equal(dec.buffer.times, [p[0] for p in pairs])
    o = np.lexsort((dec.buffer.units, dec.buffer.times))
    np.testing.assert_array_equal(dec.buffer.units[o], [p[1] for p in pairs])
