"""Unit embeddings that start from tuning: the features against a direct count, the rows' geometry,
and the option's way through the config and the recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.errors import UserError
from popdecode.train import recipe as recipes
from popdecode.train import setup
from popdecode.train.trainer import build_model, fit
from popdecode.train.unit_init import BIN_WIDTH, init_from_tuning, unit_tuning
from train.easy_data import easy_session, easy_sessions, preferred_angles
from train.easy_data import tiny_config as config


def test_features_match_a_direct_count():
    s = easy_session("e", seed=7, units=5, seconds=30.0)
    norm = setup.compute_normalization([s], ["hand_vel"])
    got = unit_tuning(s, {"hand_vel": 2}, norm)

    series, train = s.series["hand_vel"], s.split("train")
    keep = train.contains(series.timestamps)
    t, v = series.timestamps[keep], series.values[keep].astype(float)
    for u in range(5):
        own = s.spike_times[s.spike_units == u]
        counts = np.array([np.sum((own >= x - BIN_WIDTH / 2) & (own < x + BIN_WIDTH / 2)) for x in t])
        for d in range(2):
            assert got[u, d] == pytest.approx(np.corrcoef(counts, v[:, d])[0, 1], abs=1e-9)
        rate = np.sum(train.contains(own)) / train.duration
        assert got[u, 2] == pytest.approx(np.log1p(rate))


def test_features_point_along_each_units_preferred_direction():
    s = easy_session("e", seed=11, units=12)
    got = unit_tuning(s, {"hand_vel": 2}, setup.compute_normalization([s], ["hand_vel"]))
    measured = np.arctan2(got[:, 1], got[:, 0])
    error = np.angle(np.exp(1j * (measured - preferred_angles(11, 12))))
    assert np.all(np.abs(error) < 0.35)


def test_a_readout_the_session_does_not_decode_gives_zeros():
    s = easy_session("e", seed=3, units=4)
    got = unit_tuning(s, {"cursor_vel": 2, "hand_vel": 2}, setup.compute_normalization([s], ["hand_vel"]))
    assert got.shape == (4, 5)
    assert np.all(got[:, :2] == 0) and np.all(np.abs(got[:, 2:4]) > 0.05)


def test_units_tuned_alike_start_alike_across_sessions():
    sessions = easy_sessions(2, units=24)
    model, meta = build_model(config(unit_init="tuning"), sessions)
    w = model.unit_vocab.weight.detach()
    a = w[model.unit_vocab.index(setup.unit_names(sessions[0]))]
    b = w[model.unit_vocab.index(setup.unit_names(sessions[1]))]
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    gap = np.abs(np.angle(np.exp(1j * (preferred_angles(100, 24)[:, None] - preferred_angles(101, 24)[None]))))
    alike, opposite = cos.numpy()[gap < np.pi / 4], cos.numpy()[gap > 3 * np.pi / 4]
    assert alike.mean() > opposite.mean() + 0.3
    # The rows keep the random start's scale.
    assert 0.5 < w[1:].std().item() / model.config.emb_init_scale < 1.5

    random_model, _ = build_model(config(), sessions)  # the paper's start: these similarities are noise
    r = random_model.unit_vocab.weight.detach()
    ra, rb = (r[random_model.unit_vocab.index(setup.unit_names(x))] for x in sessions)
    rcos = torch.nn.functional.normalize(ra, dim=1) @ torch.nn.functional.normalize(rb, dim=1).T
    assert abs(rcos.numpy()[gap < np.pi / 4].mean() - rcos.numpy()[gap > 3 * np.pi / 4].mean()) < 0.15


def test_share_zero_keeps_the_random_rows_and_other_rows_are_untouched():
    sessions = easy_sessions(2)
    model, _ = build_model(config(), sessions)
    before = model.unit_vocab.weight.detach().clone()
    norm = setup.compute_normalization(sessions, ["hand_vel"])
    init_from_tuning(model, sessions, norm, seed=0, share=0.0)
    assert torch.equal(model.unit_vocab.weight, before)
    init_from_tuning(model, sessions[:1], norm, seed=0)
    rows1 = model.unit_vocab.index(setup.unit_names(sessions[1]))
    assert torch.equal(model.unit_vocab.weight[rows1], before[rows1])
    assert torch.equal(model.unit_vocab.weight[0], before[0])  # the padding row
    with pytest.raises(ValueError, match="share"):
        init_from_tuning(model, sessions, norm, seed=0, share=1.5)


def test_tuning_start_trains_a_pool_faster_than_random(tmp_path):
    torch.set_num_threads(1)
    sessions = easy_sessions(6, units=10, seconds=30.0)
    scores = {}
    for init in ("random", "tuning"):
        cfg = config(epochs=3, unit_init=init)
        model, meta = build_model(cfg, sessions)
        scores[init] = fit(model, sessions, cfg, tmp_path / init, meta=meta)["best_valid_r2"]
    assert scores["tuning"] > scores["random"] + 0.1, scores


def test_unknown_unit_init_is_refused_and_the_flag_wins_over_the_recipe():
    with pytest.raises(UserError, match="--unit-init must be one of random, tuning"):
        config(unit_init="pca")
    given = {"preset": None, "model_overrides": {}, "batch_size": None, "lr": None, "sampling": None,
             "readout_balance": None, "unit_init": None, "epochs": None, "eval_every": None}
    assert recipes.resolve(recipes.PAPER, given, 100)["unit_init"] == "random"
    assert recipes.resolve(recipes.PAPER, {**given, "unit_init": "tuning"}, 100)["unit_init"] == "tuning"
