"""Mixing weights that start from tuning: the logits against a direct computation, which known
units a new one starts from, and what happens to known units that were not measured."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.adapt.new_rows import add_rows, adapted_meta, check_new_sessions
from popdecode.adapt.tuning_start import tuning_logits
from popdecode.train import setup
from popdecode.train.trainer import build_model
from popdecode.train.unit_init import unit_tuning
from train.easy_data import easy_session, easy_sessions, preferred_angles
from train.easy_data import tiny_config as config


def known_and_new(bandwidth: float = 0.5, known_given: int = 2, with_new: bool = False):
    """A (untrained) model of two easy sessions with one new session attached as a mixture;
    the new session's labelled pieces are its whole train split. ``known_given``: how many of
    the known sessions are passed as known; ``with_new``: the new session is passed as well."""
    known = easy_sessions(2, units=24)
    model, meta = build_model(config(), known)
    new = easy_session("new", seed=300, units=10)
    readouts = check_new_sessions(model, [new])
    masks = add_rows(model, [new])
    pieces = {"new": new.split("train")}
    meta = adapted_meta(meta, [new], readouts, pieces)
    model.unit_vocab.mix_rows(masks["unit_vocab.weight"])
    given = known[:known_given] + ([new] if with_new else [])
    logits = tuning_logits(model, meta, [new], pieces, given, bandwidth=bandwidth)
    return model, meta, known, new, logits


def test_logits_are_the_gaussian_kernel_of_the_standardised_features():
    model, meta, known, new, logits = known_and_new(bandwidth=0.7)
    norm = setup.normalization_from_meta(meta)
    k = np.concatenate([unit_tuning(s, {"hand_vel": 2}, norm) for s in known])  # known rows are in this order
    n = unit_tuning(new, {"hand_vel": 2}, norm)
    mean, std = k.mean(axis=0), k.std(axis=0)
    assert logits.shape == (10, 48)
    for i in (0, 7):
        for j in (3, 30):
            d2 = np.sum(((n[i] - mean) / std - (k[j] - mean) / std) ** 2)
            assert float(logits[i, j]) == pytest.approx(-d2 / (2 * 0.7**2), rel=1e-5)


def test_each_new_unit_starts_nearest_to_known_units_of_its_preferred_direction():
    _, _, _, _, logits = known_and_new()
    known_angles = np.concatenate([preferred_angles(100, 24), preferred_angles(101, 24)])
    new_angles = preferred_angles(300, 10)
    top = logits.argmax(dim=1).numpy()
    error = np.abs(np.angle(np.exp(1j * (new_angles - known_angles[top]))))
    assert np.all(error < 0.8) and error.mean() < 0.35, error
    # a random known unit is on average pi/2 away: the start is not a coincidence
    weights = np.exp(logits.numpy() - logits.numpy().max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    spread = np.abs(np.angle(np.exp(1j * (new_angles[:, None] - known_angles[None]))))
    assert np.mean((weights * spread).sum(axis=1)) < 0.5, np.mean((weights * spread).sum(axis=1))


def test_known_units_whose_session_is_missing_start_at_each_rows_lowest_logit():
    _, _, _, _, logits = known_and_new(known_given=1)
    measured, missing = logits[:, :24], logits[:, 24:]
    assert (missing == measured.min(dim=1, keepdim=True).values).all()
    # the session being adapted, passed among the known ones (a store holding both), is left out
    assert (known_and_new(known_given=1, with_new=True)[-1] == logits).all()
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        known_and_new(bandwidth=0.0)
