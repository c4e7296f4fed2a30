import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from popdecode.errors import UserError
from popdecode.model import load_model, save_model

from model_helpers import random_batch, tiny_model


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    model = tiny_model(readouts={"hand_vel": 2, "position": 3})
    meta = {"target_scale": {"hand_vel": 20.0}, "session_readouts": {"s0": ["hand_vel"], "s1": ["position"]}}
    save_model(tmp_path / "run", model, meta)
    doc = json.loads((tmp_path / "run" / "model.json").read_text())
    assert doc["readouts"] == {"hand_vel": 2, "position": 3}
    assert doc["unit_vocab"][:2] == ["s0/0", "s0/1"] and doc["session_vocab"] == ["s0", "s1"]

    loaded, got_meta = load_model(tmp_path / "run")
    assert got_meta == meta and not loaded.training
    assert loaded.readout_names == ["hand_vel", "position"]
    assert loaded.unit_vocab.names == model.unit_vocab.names
    batch = random_batch(model, [20, 30], [4, 6], readouts=[0, 1])
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unserialisable_meta_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        save_model(tmp_path / "run", tiny_model(), {"bad": object()})
    assert list((tmp_path / "run").iterdir()) == []


def test_mismatched_files_and_missing_run_are_one_line_errors(tmp_path):
    model = tiny_model()
    save_model(tmp_path / "run", model)
    with pytest.raises(UserError, match="holds no saved model"):
        load_model(tmp_path / "nowhere")
    weights = load_file(tmp_path / "run" / "model.safetensors")
    weights["unit_vocab.weight"] = weights["unit_vocab.weight"][:5].contiguous()
    save_file(weights, tmp_path / "run" / "model.safetensors")
    with pytest.raises(UserError, match="does not match .*model.json"):
        load_model(tmp_path / "run")
