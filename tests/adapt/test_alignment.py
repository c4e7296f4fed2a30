"""The alignment term: the distance, the prior it compares with, and what it trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from popdecode.adapt.alignment import AlignmentLoss, behaviour_prior, prior_sessions, sliced_wasserstein
from popdecode.errors import UserError
from popdecode.train.config import DEFAULT_LOSS_WEIGHTS
from train.easy_data import easy_session


def test_one_dimensional_distance_is_the_squared_wasserstein_distance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 1, generator=g)
    y = x[torch.randperm(500, generator=g)] + 0.7  # same shape, shifted: W2^2 = 0.7^2
    assert float(sliced_wasserstein(x, y, generator=g)) == pytest.approx(0.49, rel=1e-5)
    assert float(sliced_wasserstein(x, x.flip(0), generator=g)) == pytest.approx(0.0, abs=1e-10)


def test_two_dimensional_distance_averages_projections_of_a_shift():
    # A shift c along one axis projects to c * cos(angle): the mean over random directions of
    # (c cos)^2 is c^2 / 2.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 2, generator=g)
    y = x + torch.tensor([2.0, 0.0])
    d = float(sliced_wasserstein(x, y, projections=4000, generator=g))
    assert d == pytest.approx(2.0, rel=0.05)


def test_gradient_moves_predictions_toward_the_prior():
    g = torch.Generator().manual_seed(2)
    prior = torch.randn(2000, 2, generator=g) * 0.5 + torch.tensor([1.0, -1.0])
    x = torch.zeros(300, 2, requires_grad=True)
    opt = torch.optim.SGD([x], lr=75.0)  # the mean over 300 points scales each gradient by 1/300
    for _ in range(200):
        opt.zero_grad()
        sliced_wasserstein(x + torch.randn(300, 2, generator=g) * 0.01, prior, generator=g).backward()
        opt.step()
    assert torch.allclose(x.detach().mean(0), torch.tensor([1.0, -1.0]), atol=0.1)
    assert x.detach().std(0).min() > 0.35  # spread out like the prior, not collapsed on its mean


def test_prior_takes_movement_samples_of_the_train_split_normalised():
    s = easy_session("p", seed=3, seconds=30.0)
    s.intervals["hold"] = s.domain.difference(s.intervals["reach"])  # weight 0.1: not movement
    series = s.series["hand_vel"]
    mean, std = np.array([3.0, 3.0], np.float32), np.array([10.0, 10.0], np.float32)
    prior = behaviour_prior([s], "hand_vel", (mean, std), loss_weights=DEFAULT_LOSS_WEIGHTS, max_samples=10**9)
    keep = s.intervals["reach"].contains(series.timestamps) & s.split("train").contains(series.timestamps)
    expected = (series.values[keep] - mean) / std
    assert 0 < len(expected) < 0.5 * len(series.values)
    assert prior.shape == expected.shape
    assert np.allclose(np.sort(prior.numpy(), 0), np.sort(expected, 0))
    # Capped: a random subset of the same samples.
    small = behaviour_prior([s], "hand_vel", (mean, std), loss_weights=DEFAULT_LOSS_WEIGHTS, max_samples=50)
    assert small.shape == (50, 2)
    assert np.isin(small.numpy()[:, 0], expected[:, 0]).all()


def test_prior_of_sessions_without_movement_phases_is_every_train_sample():
    s = easy_session("p", seed=3, seconds=30.0)
    del s.intervals["reach"]
    series = s.series["hand_vel"]
    prior = behaviour_prior([s], "hand_vel", (np.zeros(2), np.ones(2)), loss_weights=DEFAULT_LOSS_WEIGHTS,
                            max_samples=10**9)
    assert len(prior) == int(s.split("train").contains(series.timestamps).sum())


def test_prior_without_movement_is_refused():
    s = easy_session("p", seed=3, seconds=30.0)
    s.intervals["hold"] = s.domain
    with pytest.raises(UserError, match="during movement"):
        behaviour_prior([s], "hand_vel", (np.zeros(2), np.ones(2)), loss_weights={"hold": 0.1})


def test_prior_sessions_without_a_known_store_say_what_to_pass(tmp_path):
    with pytest.raises(UserError, match="--prior-data"):
        prior_sessions({"sessions": ["a"]})
    with pytest.raises(UserError, match="is not there.*--prior-data"):
        prior_sessions({"sessions": ["a"], "train_config": {"data": [str(tmp_path / "gone")]}})


def test_alignment_loss_reaches_the_trainable_rows_only():
    from popdecode.model.poyo import POYO
    from popdecode.train import setup
    from popdecode.model.config import POYOConfig
    from train.easy_data import TINY_MODEL

    torch.manual_seed(0)
    s = easy_session("a", seed=4, units=6, seconds=30.0)
    model = POYO(config=POYOConfig(**TINY_MODEL), readouts={"hand_vel": 2})
    setup.register_sessions(model, [s])
    meta = {"normalization": setup.normalization_to_meta(setup.compute_normalization([s], ["hand_vel"])),
            "session_readouts": {"a": ["hand_vel"]}}
    tok = setup.make_tokenizer(model, [s], meta, train=True, loss_weights=DEFAULT_LOSS_WEIGHTS)
    prior = torch.randn(1000, 2)
    term = AlignmentLoss(sessions=[s], tokenizer=tok, priors={"hand_vel": prior}, weight=2.0, batch_size=4)
    for p in model.parameters():
        p.requires_grad_(False)
    model.unit_vocab.weight.requires_grad_(True)
    loss = term(model, torch.device("cpu"))
    value = float(loss.detach())
    assert loss.ndim == 0 and math.isfinite(value) and value > 0
    assert value == pytest.approx(2.0 * term.last)
    loss.backward()
    assert model.unit_vocab.weight.grad is not None and model.unit_vocab.weight.grad.abs().sum() > 0
