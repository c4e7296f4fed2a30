"""Which trials are labelled, where their windows go, and what the loss sees of them."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from popdecode.adapt.labelled import (
    UNLABELLED, LabelledSession, LabelledSpec, labelled_pieces, parse_labelled_trials, training_trials,
    window_spans,
)
from popdecode.data.intervals import Intervals
from popdecode.errors import UserError
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.tokenize.tokenizer import Tokenizer, TokenizerConfig
from train.easy_data import easy_session


def short_trial_session():
    """Trials of 0.4 s laid end to end over 0-20 s; train = [0, 6) + [6.5, 7.2) + [9, 20).

    The 0.7 s train interval is shorter than a window: its trial does not count.
    """
    base = easy_session("short", seed=3, seconds=20.0)
    starts = np.arange(0.0, 20.0 - 1e-9, 0.4)
    train = Intervals(np.array([0.0, 6.5, 9.0]), np.array([6.0, 7.2, 20.0]))
    return dataclasses.replace(
        base, trials={"start": starts, "stop": starts + 0.4},
        intervals={**base.intervals, "train": train},
    )


def test_parse_counts_fractions_seconds_and_all():
    specs = parse_labelled_trials("5, 10,0.25,all, 90s,1.5S")
    assert [s.label for s in specs] == ["5", "10", "0.25", "all", "90s", "1.5s"]
    assert [s.resolve(40) for s in specs[:4]] == [5, 10, 10, 40]
    assert specs[4] == LabelledSpec(seconds=90.0) and not specs[4].is_all
    assert LabelledSpec(count=50).resolve(41) == 41  # more than there are: all of them
    assert LabelledSpec(fraction=0.01).resolve(41) == 1  # a fraction never rounds to nothing


@pytest.mark.parametrize("text, message", [
    ("0", "--labelled-trials 0: the labelled set would be empty; give at least 1 trial"),
    ("5,0.0", "--labelled-trials 0.0: the labelled set would be empty; give at least 1 trial"),
    ("ten", "--labelled-trials: cannot read 'ten'; give trial counts (10), fractions of the training trials "
            "(0.25), seconds (60s) or 'all', separated by commas"),
    ("1.5", "--labelled-trials: cannot read '1.5'; give trial counts (10), fractions of the training trials "
            "(0.25), seconds (60s) or 'all', separated by commas"),
    ("0s", "--labelled-trials 0s: give a positive number of seconds, e.g. 60s"),
    ("s", "--labelled-trials: cannot read 's'; give trial counts (10), fractions of the training trials "
          "(0.25), seconds (60s) or 'all', separated by commas"),
    ("5,all,5", "--labelled-trials 5,all,5: a value is repeated; give each once"),
])
def test_parse_refuses(text, message):
    with pytest.raises(UserError) as err:
        parse_labelled_trials(text)
    assert str(err.value) == message


def test_training_trials_are_the_trials_in_usable_train_intervals_in_time_order():
    s = short_trial_session()
    trials = training_trials(s)
    # [0, 6): 15 whole trials; [6.5, 7.2) is too short; [9, 20): 27.5 trials -> 28 pieces.
    assert len(trials) == 15 + 28
    np.testing.assert_allclose(trials.start[:3], [0.0, 0.4, 0.8])
    assert trials.start[15] == pytest.approx(9.0) and trials.end[15] == pytest.approx(9.2)  # clipped by the split
    assert np.all(np.diff(trials.start) > 0)
    assert not Intervals(np.array([6.5]), np.array([7.2])).intersect(trials).duration
    pieces = labelled_pieces(s, LabelledSpec(count=3))
    np.testing.assert_allclose(pieces.start, [0.0, 0.4, 0.8])
    np.testing.assert_allclose(pieces.end, [0.4, 0.8, 1.2])


def test_short_trials_get_full_windows_inside_their_train_interval():
    s = short_trial_session()
    one = Intervals(np.array([12.0]), np.array([12.4]))
    spans = window_spans(s, one)
    np.testing.assert_allclose([spans.start[0], spans.end[0]], [11.4, 13.0])  # [b - 1, a + 1)
    edge = Intervals(np.array([9.0]), np.array([9.2]))
    spans = window_spans(s, edge)
    np.testing.assert_allclose([spans.start[0], spans.end[0]], [9.0, 10.0])  # clipped to the train interval
    # Whatever the epoch's offset, the single window of a span holds the whole trial, and
    # never leaves the train split.
    sampler = TrainWindowSampler(intervals=[window_spans(s, one)], window_length=1.0, seed=0)
    starts = {round(t, 6) for e in range(30) for _, t in sampler.epoch_windows(e)}
    assert len(starts) > 10  # the trial moves around inside its window
    assert all(11.4 - 1e-9 <= t <= 12.0 + 1e-9 for t in starts)


def test_session_without_trials_accepts_only_all():
    s = dataclasses.replace(easy_session("no-trials", seed=1), trials=None)
    with pytest.raises(UserError) as err:
        labelled_pieces(s, LabelledSpec(count=5))
    assert str(err.value) == ("session 'no-trials' has no trial table, so --labelled-trials 5 cannot pick trials; "
                              "give seconds of its train split (e.g. 60s) or all")
    pieces = labelled_pieces(s, LabelledSpec())
    assert pieces.duration == pytest.approx(s.split("train").duration)
    some = labelled_pieces(s, LabelledSpec(seconds=7.5))
    assert some.duration == pytest.approx(7.5)
    assert some.start[0] == pytest.approx(s.split("train").start[0])


def test_seconds_are_the_first_seconds_of_the_usable_train_split():
    s = short_trial_session()  # usable train: [0, 6) and [9, 20); [6.5, 7.2) is too short
    pieces = labelled_pieces(s, LabelledSpec(seconds=8.0))
    np.testing.assert_allclose(pieces.start, [0.0, 9.0])
    np.testing.assert_allclose(pieces.end, [6.0, 11.0])
    assert labelled_pieces(s, LabelledSpec(seconds=4.0)).end.tolist() == pytest.approx([4.0])
    everything = labelled_pieces(s, LabelledSpec(seconds=1e6))
    assert everything.duration == pytest.approx(17.0)


def test_no_usable_training_trial_is_an_error():
    s = short_trial_session()
    s = dataclasses.replace(s, intervals={**s.intervals, "train": Intervals(np.array([6.5]), np.array([7.2]))})
    with pytest.raises(UserError) as err:
        labelled_pieces(s, LabelledSpec(count=5))
    assert str(err.value) == ("session 'short' has no labelled data: no training trial lies in a train interval "
                              "of at least 1 s; check its splits (popdecode inspect)")


def test_view_trains_on_spans_and_weighs_only_the_labelled_samples():
    s = short_trial_session()
    pieces = labelled_pieces(s, LabelledSpec(count=2))  # [0, 0.4) and [0.4, 0.8)
    view = LabelledSession(s, pieces)
    np.testing.assert_allclose([view.split("train").start[0], view.split("train").end[0]], [0.0, 1.4])
    assert view.split("test") is s.split("test") and view.id == "short" and view.num_units == s.num_units
    assert len(LabelledSession(s, pieces, no_valid=True).split("valid")) == 0

    tok = Tokenizer(unit_rows={"short": np.arange(1, s.num_units + 1)}, session_rows={"short": 1},
                    readouts=["hand_vel"], normalization={"hand_vel": (np.zeros(2), np.ones(2))},
                    session_readouts={"short": ["hand_vel"]},
                    config=TokenizerConfig(loss_weights={"reach": 5.0, UNLABELLED: 0.0}))
    win = tok(view, 0.2)
    t = win.output_times.astype(np.float64) + 0.2
    w = win.targets["hand_vel"].weights
    assert np.all(w[t >= 0.8 + 1e-6] == 0) and np.all(w[t < 0.8 - 1e-6] > 0)
    # The same window of the plain session weighs every sample; inputs are identical.
    plain = tok(s, 0.2)
    assert np.all(plain.targets["hand_vel"].weights > 0)
    np.testing.assert_array_equal(plain.input_units, win.input_units)

    again = pickle.loads(pickle.dumps(view))  # DataLoader workers receive it pickled
    assert again.split("train").duration == view.split("train").duration and again.id == "short"
