"""Token-for-token parity with the reference tokenizer (torch-brain 0.2.1's POYO.tokenize).

The same spikes are put into torch-brain's data objects, sliced to the same window and
tokenized by the reference model after its vocabularies were filled with the same unit and
session names; the unpadded part of its output must equal ours. The unit-dropout count is
compared as a distribution against the reference's own sampler.
"""

from __future__ import annotations

import numpy as np
import pytest
from tokenize_helpers import tiny_session

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.tokenize.tokenizer import Tokenizer
from popdecode.tokenize.unit_dropout import sample_num_units

pytestmark = pytest.mark.parity
tb_data = pytest.importorskip("torch_brain.data")
tb_models = pytest.importorskip("torch_brain.models")


def random_session(session_id, n_units, duration, seed):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 10.0, n_units)  # uneven rates, a few near-silent units
    units = np.concatenate([np.full(rng.poisson(r * duration), u) for u, r in enumerate(rates)])
    times = rng.uniform(0, duration, len(units))
    order = np.argsort(times)
    ts = np.arange(0, duration, 0.01)
    return Session(
        id=session_id,
        spike_times=times[order] + 3.0,  # not starting at 0, like the rat files
        spike_units=units[order],
        unit_ids=[f"unit{u:03d}" for u in range(n_units)],
        series={"vel": Series(ts + 3.0, np.zeros((len(ts), 2)))},
        domain=Intervals([3.0], [3.0 + duration]),
    )


def reference_data(session: Session):
    d = tb_data
    return d.Data(
        spikes=d.IrregularTimeSeries(
            timestamps=session.spike_times,
            unit_index=session.spike_units,
            domain=d.Interval(session.start, session.end),
        ),
        units=d.ArrayDict(id=np.array([f"{session.id}/{u}" for u in session.unit_ids])),
        session=d.Data(id=session.id),
        domain=d.Interval(session.start, session.end),
    )


def test_tokens_equal_reference():
    sessions = [tiny_session("tiny"), random_session("rand_a", 57, 20.0, 0), random_session("rand_b", 23, 12.0, 1)]
    model = tb_models.POYO(
        sequence_length=1.0, latent_step=0.125, num_latents_per_step=2, dim_out=2, dim=16, depth=0, cross_heads=1, self_heads=1
    )
    names = [f"{s.id}/{u}" for s in sessions for u in s.unit_ids]
    model.unit_emb.initialize_vocab(names)
    model.session_emb.initialize_vocab([s.id for s in sessions])

    ours = Tokenizer(
        unit_rows={s.id: np.array(model.unit_emb.tokenizer([f"{s.id}/{u}" for u in s.unit_ids])) for s in sessions},
        session_rows={s.id: model.session_emb.tokenizer(s.id) for s in sessions},
        readouts=["vel"],
        normalization={"vel": (np.zeros(2), np.ones(2))},
        session_readouts={},
    )
    rng = np.random.default_rng(0)
    compared = 0
    for s in sessions:
        data = reference_data(s)
        for t0 in rng.uniform(s.start, s.end - 1.0, 6):
            ref = model.tokenize(data.slice(float(t0), float(t0) + 1.0))
            w = ours(s, t0)
            np.testing.assert_array_equal(w.input_units, ref["input_unit_index"].obj)
            np.testing.assert_array_equal(w.input_types, ref["input_token_type"].obj)
            np.testing.assert_array_equal(w.input_times, ref["input_timestamps"].obj.astype(np.float32))
            assert w.session_index == ref["session_index"]
            # latent grid (built by the model from its config): t = (k + 0.5) * 0.125
            np.testing.assert_allclose(np.unique(ref["latent_timestamps"]), (np.arange(8) + 0.5) * 0.125)
            compared += len(w.input_units)
    assert compared > 1000


def test_unit_dropout_count_distribution_matches_reference():
    from torch_brain.transforms.unit_dropout import TriangleDistribution

    ref = TriangleDistribution(min_units=30, mode_units=100, max_units=300, seed=0)
    n = 20000
    theirs = np.array([int(ref.sample(1000)) for _ in range(n)])
    rng = np.random.default_rng(0)
    ours = np.array([sample_num_units(1000, rng, min_units=30, mode_units=100, max_units=300) for _ in range(n)])
    edges = np.arange(30, 301, 30)
    h_theirs = np.histogram(theirs, bins=edges)[0] / n
    h_ours = np.histogram(ours, bins=edges)[0] / n
    np.testing.assert_allclose(h_ours, h_theirs, atol=0.015)  # two samples: ~3.5 sd per bin
    assert abs(ours.mean() - theirs.mean()) < 2.0  # mean ~150 units, sd ~66: se of the difference ~0.66
    assert (theirs < 30).sum() == 0 and ref.sample(29) == 29


@pytest.mark.realdata
def test_tokens_equal_reference_on_real_recordings(real_data):
    """Real spike times (rat: recorded clock far from 0; monkey: silent units)."""
    from popdecode.data.importers import load_recording

    sessions = [load_recording(real_data / "rat_linear_track.nwb"), load_recording(real_data / "chewie_20131219.nwb")]
    model = tb_models.POYO(
        sequence_length=1.0, latent_step=0.125, num_latents_per_step=2, dim_out=2, dim=16, depth=0, cross_heads=1, self_heads=1
    )
    model.unit_emb.initialize_vocab([f"{s.id}/{u}" for s in sessions for u in s.unit_ids])
    model.session_emb.initialize_vocab([s.id for s in sessions])
    ours = Tokenizer(
        unit_rows={s.id: np.array(model.unit_emb.tokenizer([f"{s.id}/{u}" for u in s.unit_ids])) for s in sessions},
        session_rows={s.id: model.session_emb.tokenizer(s.id) for s in sessions},
        readouts=[],
        normalization={},
        session_readouts={},
    )
    rng = np.random.default_rng(1)
    for s in sessions:
        data = reference_data(s)
        for t0 in rng.uniform(s.start, s.end - 1.0, 10):
            ref = model.tokenize(data.slice(float(t0), float(t0) + 1.0))
            w = ours(s, t0)
            np.testing.assert_array_equal(w.input_units, ref["input_unit_index"].obj)
            np.testing.assert_array_equal(w.input_types, ref["input_token_type"].obj)
            # both compute (t - t0) in float64; ours is stored as float32
            np.testing.assert_array_equal(w.input_times, ref["input_timestamps"].obj.astype(np.float32))
