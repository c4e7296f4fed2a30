"""Which recipe the train command picks, and how the user's flags win over it."""

from __future__ import annotations

import numpy as np
import pytest

from popdecode.data.intervals import Intervals
from popdecode.errors import UserError
from popdecode.train import recipe


class _Session:
    def __init__(self, train_s: float):
        self._train = Intervals(np.array([0.0]), np.array([train_s]))

    def split(self, name):
        return self._train


UNSET = {"preset": None, "model_overrides": {}, "batch_size": None, "lr": None, "sampling": None,
         "readout_balance": None, "epochs": None, "eval_every": None}


def test_auto_follows_the_amount_of_training_data():
    small = recipe.choose("auto", [_Session(3600.0), _Session(3599.0)] * 2)  # 4.0 h
    assert small.name == "small-data" and small.why == "4.0 h of training data, under 5 h"
    large = recipe.choose("auto", [_Session(3600.0)] * 5)  # exactly 5 h: no longer small
    assert large.name == "auto" and large.sampling == "sqrt" and large.model_overrides == {} and large.lr is None
    assert recipe.choose("paper", [_Session(60.0)]).sampling == "duration"
    with pytest.raises(UserError, match="--recipe must be one of auto, small-data, paper"):
        recipe.choose("fast", [_Session(60.0)])


def test_tuning_start_from_eight_sessions_except_in_the_paper_recipe():
    assert recipe.choose("auto", [_Session(60.0)] * 7).unit_init == "random"
    eight = recipe.choose("auto", [_Session(60.0)] * 8)
    assert eight.name == "small-data" and eight.unit_init == "tuning"
    assert eight.why.endswith("8 sessions: unit rows start from tuning") and eight.lr == 3e-3
    assert recipe.choose("auto", [_Session(3600.0)] * 8).unit_init == "tuning"  # 8 h: the paper's model
    assert recipe.choose("small-data", [_Session(60.0)] * 8).unit_init == "tuning"
    assert recipe.choose("paper", [_Session(60.0)] * 32).unit_init == "random"
    given = {**UNSET, "unit_init": "random"}  # the flag still wins
    assert recipe.resolve(eight, given, windows_per_epoch=300)["unit_init"] == "random"


def test_epochs_make_the_recipes_number_of_windows():
    fields = recipe.resolve(recipe.SMALL_DATA, UNSET, windows_per_epoch=300)
    assert fields["epochs"] == 214  # ceil(64,000 / 300)
    assert fields["eval_every"] == 10  # about 20 validations
    assert recipe.resolve(recipe.PAPER, UNSET, windows_per_epoch=300)["epochs"] == 100


def test_given_flags_win_and_a_given_preset_drops_the_recipes_changes():
    given = {**UNSET, "preset": "poyo-11.8M", "model_overrides": {"dim": 32}, "lr": 1e-3, "epochs": 7}
    fields = recipe.resolve(recipe.SMALL_DATA, given, windows_per_epoch=300)
    assert fields == {"preset": "poyo-11.8M", "model_overrides": {"dim": 32}, "batch_size": 16, "lr": 1e-3,
                      "sampling": "session", "readout_balance": "windows", "unit_init": "random", "epochs": 7,
                      "eval_every": 1}
    kept = recipe.resolve(recipe.SMALL_DATA, {**UNSET, "model_overrides": {"depth": 3}}, windows_per_epoch=300)
    assert kept["model_overrides"] == {"depth": 3, "num_latents_per_step": 8, "cross_heads": 1, "self_heads": 2}
