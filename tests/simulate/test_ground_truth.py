"""The ground truth file: a faithful round trip, and a clear error when it is missing."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from popdecode.errors import UserError
from popdecode.simulate.ground_truth import load_ground_truth, save_ground_truth
from popdecode.simulate.simulator import SimulationConfig

from .conftest import small_config


def test_round_trip(small_dataset, tmp_path):
    _, truth = small_dataset
    path = save_ground_truth(tmp_path, truth)
    assert path == tmp_path / "ground_truth.h5"
    back = load_ground_truth(tmp_path)
    assert back.config == truth.config and back.rate_step == truth.rate_step
    assert SimulationConfig.from_dict(back.config) == small_config()
    assert back.session_animal == truth.session_animal
    for sid in truth.unit_pool_index:
        assert np.array_equal(back.unit_pool_index[sid], truth.unit_pool_index[sid])
        assert back.unit_pool_index[sid].dtype == np.int64
        assert np.array_equal(back.session_gain[sid], truth.session_gain[sid])
        for name in ("rates", "latents", "command_noise"):
            got, want = getattr(back, name)[sid], getattr(truth, name)[sid]
            assert got.dtype == np.float32 and np.array_equal(got, want)
    for subject, pool in truth.pools.items():
        for name, values in pool.arrays().items():
            assert np.array_equal(getattr(back.pools[subject], name), values)
    # Without rates: the small parts only; the file path works as well as its folder.
    light = load_ground_truth(path, rates=False)
    assert light.rates == {} and light.latents == {} and set(light.unit_pool_index) == set(truth.unit_pool_index)


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(UserError) as err:
        load_ground_truth(tmp_path)
    assert str(err.value) == (
        f"no ground truth at {tmp_path / 'ground_truth.h5'}; simulate a dataset with `popdecode simulate --out DIR`"
    )
    with h5py.File(tmp_path / "ground_truth.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(UserError, match="is not a popdecode simulation ground truth file"):
        load_ground_truth(tmp_path)
