"""The dataset/loader: reproducible unit dropout with or without workers, and resuming."""

from __future__ import annotations

import numpy as np
import torch

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.tokenize.dataset import WindowDataset, make_loader
from popdecode.tokenize.sampler import EvalWindowSampler, TrainWindowSampler
from popdecode.tokenize.tokenizer import Tokenizer, TokenizerConfig


def synthetic(session_id, n_units=60, duration=30.0, seed=0):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, duration, 20 * n_units))
    ts = np.arange(0, duration, 0.05)
    return Session(
        id=session_id,
        spike_times=times,
        spike_units=rng.integers(0, n_units, len(times)),
        unit_ids=[str(i) for i in range(n_units)],
        series={"vel": Series(ts, rng.normal(size=(len(ts), 2)))},
        intervals={"train": Intervals([0.0, 15.0], [12.0, 30.0])},
    )


def setup(num_workers=0):
    sessions = [synthetic("s0"), synthetic("s1", n_units=45, seed=1)]
    tok = Tokenizer(
        unit_rows={"s0": np.arange(1, 61), "s1": np.arange(61, 106)},
        session_rows={"s0": 1, "s1": 2},
        readouts=["vel"],
        normalization={"vel": (np.zeros(2), np.ones(2))},
        session_readouts={"s0": ["vel"], "s1": ["vel"]},
        config=TokenizerConfig(unit_dropout=True, min_units=10, mode_units=20, max_units=50),
    )
    sampler = TrainWindowSampler(intervals=[s.split("train") for s in sessions], seed=4)
    ds = WindowDataset(sessions, tok, windows=sampler, seed=11, train=True)
    return sampler, ds


def run_epochs(num_workers, epochs=(0, 1)):
    sampler, ds = setup()
    loader = make_loader(ds, batch_size=8, num_workers=num_workers, persistent_workers=num_workers > 0)
    out = []
    for e in epochs:
        sampler.set_epoch(e)
        out.append([(b.input_units.clone(), b.input_times.clone(), b.window_starts.copy()) for b in loader])
    return out


def same(a, b):
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and np.array_equal(x[2], y[2]) for x, y in zip(a, b)
    )


def test_workers_give_identical_batches_and_dropout_varies_per_epoch():
    single = run_epochs(0)
    workers = run_epochs(2)
    assert same(single[0], workers[0]) and same(single[1], workers[1])
    assert not same(single[0], single[1])
    # dropout is on: windows keep different numbers of units
    n_delims = {int((b[0].numel())) for b in single[0]}
    assert len(n_delims) > 1


def test_resume_mid_epoch_gives_the_rest_of_the_epoch():
    sampler, ds = setup()
    sampler.set_epoch(1)
    full = [(b.input_units, b.input_times, b.window_starts) for b in make_loader(ds, batch_size=8)]
    sampler2, ds2 = setup()
    sampler2.load_state_dict({"epoch": 1, "position": 16})  # two batches of 8 done
    rest = [(b.input_units, b.input_times, b.window_starts) for b in make_loader(ds2, batch_size=8)]
    assert same(full[2:], rest)


def test_same_window_same_tokens_regardless_of_sampler_position():
    sampler, ds = setup()
    key = next(iter(ds.keys()))
    a, b = ds[key], ds[key]
    np.testing.assert_array_equal(a.input_units, b.input_units)
    assert ds[0].window_start == key[1]  # integer access: this epoch's first window


def test_eval_dataset_is_deterministic_and_complete():
    _, train_ds = setup()
    ev = EvalWindowSampler(intervals=[Intervals([1.0], [4.0]), Intervals([2.0], [3.5])])
    ds = WindowDataset(train_ds.sessions, train_ds.tokenizer, windows=list(ev), train=False)
    assert len(ds) == len(ev) == 5 + 2
    batch = next(iter(make_loader(ds, batch_size=16)))
    np.testing.assert_allclose(batch.window_starts, [1.0, 1.5, 2.0, 2.5, 3.0, 2.0, 2.5])
    # no dropout: every unit's two delimiters are there
    n_delim = [(batch.input_types[a:b] != 0).sum().item() for a, b in zip([0] + batch.input_lengths.cumsum(0).tolist()[:-1], batch.input_lengths.cumsum(0).tolist())]
    assert n_delim == [120] * 5 + [90] * 2
