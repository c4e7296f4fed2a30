"""`popdecode convert-torch-brain` on checkpoint files made here."""

import json
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from popdecode.cli import main
from popdecode.model import load_model

tb_models = pytest.importorskip("torch_brain.models")

HP = dict(sequence_length=1.0, latent_step=0.125, num_latents_per_step=4, dim=32, depth=2, dim_head=16,
          cross_heads=1, self_heads=2, ffn_dropout=0.1, lin_dropout=0.3, atn_dropout=0.0)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = tb_models.POYO(dim_out=2, **HP)
    ref.unit_emb.initialize_vocab(["a/1", "a/2", "b/1"])
    ref.session_emb.initialize_vocab(["a", "b"])
    return ref.eval()


def _inputs():
    return dict(
        input_unit_index=torch.tensor([[1, 2, 1, 2, 0], [3, 3, 3, 0, 0]]),
        input_token_type=torch.tensor([[1, 2, 0, 0, 0], [1, 2, 0, 0, 0]]),
        # float32 values (ours are float32), in float64 as torch-brain's tokenizer hands them over
        input_timestamps=torch.tensor([[0.0, 1.0, 0.3, 0.5, 0.0], [0.0, 1.0, 0.7, 0.0, 0.0]]).double(),
        input_mask=torch.tensor([[True] * 4 + [False], [True] * 3 + [False] * 2]),
        session_index=torch.tensor([1, 2]),
        output_timestamps=torch.tensor([[0.2, 0.9], [0.5, 0.0]]).double(),
        output_mask=torch.tensor([[True, True], [True, False]]),
    )


def _check_same(reference, run_dir, readout="hand_vel"):
    model, meta = load_model(run_dir)
    x = _inputs()
    with torch.no_grad():
        exp = torch.cat(reference(**x, latent_index=model.latent_rows[None].expand(2, -1),
                                  latent_timestamps=model.latent_times.double()[None].expand(2, -1), unpack_output=True))
        got = model.forward_padded(input_units=x["input_unit_index"], input_types=x["input_token_type"],
                                   input_times=x["input_timestamps"].float(), input_mask=x["input_mask"],
                                   session_index=x["session_index"], output_times=x["output_timestamps"].float(),
                                   output_mask=x["output_mask"])[readout]
    assert (got - exp).abs().max() <= 1e-5
    assert model.config.lin_dropout == 0.3 and model.config.dim_head == 16
    assert model.unit_vocab.names == ["a/1", "a/2", "b/1"]
    return meta


def test_lightning_style_checkpoint(tmp_path, reference, capsys):
    sd = OrderedDict(("model." + k, v) for k, v in reference.state_dict().items())
    torch.save({"state_dict": sd, "hyper_parameters": {"model": dict(HP)}, "epoch": 3}, tmp_path / "last.ckpt")
    assert main(["convert-torch-brain", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "run"), "--readout", "cursor_vel"]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = _check_same(reference, tmp_path / "run", "cursor_vel")
    assert meta["converted_from"]["format"] == "torch-brain POYO"
    # A second conversion into the same run is refused without --force.
    assert main(["convert-torch-brain", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "run")]) == 2
    assert "already holds a model" in capsys.readouterr().err


def test_plain_state_dict_with_hparams_json(tmp_path, reference):
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "hp.json").write_text(json.dumps({"model": HP}))
    assert main(["convert-torch-brain", str(tmp_path / "weights.pt"), "--hparams", str(tmp_path / "hp.json"), "--out", str(tmp_path / "run")]) == 0
    _check_same(reference, tmp_path / "run")


def test_safetensors_with_vocabularies_in_the_json(tmp_path, reference):
    sd = {k: v.contiguous() for k, v in reference.state_dict().items() if isinstance(v, torch.Tensor)}
    save_file(sd, tmp_path / "w.safetensors")
    hp = dict(HP, unit_vocab=["a/1", "a/2", "b/1"], session_vocab={"NA": 0, "a": 1, "b": 2})
    (tmp_path / "hp.json").write_text(json.dumps(hp))
    assert main(["convert-torch-brain", str(tmp_path / "w.safetensors"), "--hparams", str(tmp_path / "hp.json"), "--out", str(tmp_path / "run")]) == 0
    _check_same(reference, tmp_path / "run")


class Custom:  # stands for an OmegaConf config or any class a safe load must refuse
    pass


def test_checkpoint_with_custom_classes_is_refused_with_export_instructions(tmp_path, reference, capsys):
    torch.save({"state_dict": reference.state_dict(), "hyper_parameters": Custom()}, tmp_path / "x.ckpt")
    assert main(["convert-torch-brain", str(tmp_path / "x.ckpt"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("popdecode: error: ") and "\n" not in err
    assert "holds Python objects that a safe load refuses; export a plain checkpoint first" in err
    assert not (tmp_path / "run").exists()


def test_missing_hyperparameters_and_non_poyo_files(tmp_path, reference, capsys):
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    assert main(["convert-torch-brain", str(tmp_path / "weights.pt"), "--out", str(tmp_path / "run")]) == 2
    assert "carries no hyperparameters; pass --hparams JSON" in capsys.readouterr().err
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": HP}, tmp_path / "other.ckpt")
    assert main(["convert-torch-brain", str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "run")]) == 2
    assert "not a torch-brain POYO state dict: it has no 'latent_emb.weight'" in capsys.readouterr().err
