"""popdecode adapt: frozen weights stay bit for bit, rows are added, curves are written, bad input is refused."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from popdecode.cli import main
from popdecode.data.session import Series
from popdecode.data.store import write_session
from popdecode.model.io import load_model
from popdecode.train.config import TrainConfig
from popdecode.train.trainer import train_from_scratch
from train.easy_data import TINY_MODEL, easy_session, easy_sessions

FAST = ["--steps", "4", "--finetune-steps", "3", "--scratch-steps", "3", "--batch-size", "8", "--evals", "1",
        "--threads", "1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny model trained on two easy sessions, and a store holding two sessions it never saw."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("adapt")
    for s in easy_sessions(2, seconds=30.0):
        write_session(root / "old", s)
    for i in range(2):
        write_session(root / "new", easy_session(f"new-{i}", seed=200 + i, units=9, seconds=30.0))
    # Barely trained: what is tested is which weights move, not how well they decode.
    cfg = TrainConfig(data=[str(root / "old")], epochs=1, batch_size=8, lr=3e-3, model_overrides=dict(TINY_MODEL))
    train_from_scratch(cfg, root / "run")
    yield root
    torch.set_num_threads(threads)


def adapt(root, out, *extra):
    return main(["adapt", str(root / "run"), "--data", str(root / "new"), "--out", str(out), *FAST, *extra])


def test_unit_id_adds_rows_and_leaves_every_other_weight_bit_for_bit(pretrained, tmp_path, capsys):
    root = pretrained
    assert adapt(root, tmp_path / "ad", "--mode", "unit-id", "--new-rows", "random", "--labelled-trials", "3") == 0
    before = load_file(str(root / "run" / "model.safetensors"))
    after = load_file(str(tmp_path / "ad" / "model.safetensors"))
    assert set(before) == set(after)
    for name, old in before.items():
        new = after[name]
        if name in ("unit_vocab.weight", "session_vocab.weight"):
            n = old.shape[0]
            assert torch.equal(new[:n], old), name  # every existing row, bit for bit
            assert new.shape[0] == n + (18 if name == "unit_vocab.weight" else 2)
            assert new[n:].abs().sum() > 0
        else:
            assert torch.equal(new, old), name

    model, meta = load_model(tmp_path / "ad")
    old_model, old_meta = load_model(root / "run")
    names = model.unit_vocab.names
    assert names[: len(old_model.unit_vocab)] == old_model.unit_vocab.names
    assert names[len(old_model.unit_vocab):] == [f"new-{i}/u{k}" for i in range(2) for k in range(9)]
    assert model.session_vocab.names == old_model.session_vocab.names + ["new-0", "new-1"]
    assert meta["normalization"] == old_meta["normalization"]
    assert meta["session_readouts"]["new-1"] == ["hand_vel"]
    assert meta["adaptation"]["labelled_trials"] == {"new-0": 3, "new-1": 3}
    assert meta["pretrained_sessions"] == ["easy-0", "easy-1"]

    # NEWRUN is a normal run: evaluate scores the new sessions as adapt did.
    assert main(["evaluate", str(tmp_path / "ad"), "--data", str(root / "new")]) == 0
    with open(tmp_path / "ad" / "results_test.csv") as f:
        evaluated = {r["session"]: float(r["r2"]) for r in csv.DictReader(f)}
    curve = json.loads((tmp_path / "ad" / "learning_curve.json").read_text())
    assert {p["session"]: p["r2_adapt"] for p in curve} == pytest.approx(evaluated, abs=1e-6)
    assert all(p["r2_scratch"] is None for p in curve)  # one value: no scratch unless asked
    capsys.readouterr()


def test_finetune_changes_the_network_but_not_the_old_rows(pretrained, tmp_path):
    root = pretrained
    assert adapt(root, tmp_path / "ft", "--mode", "unit-id+finetune", "--labelled-trials", "3",
                 "--sessions", "new-0", "--no-valid") == 0
    before = load_file(str(root / "run" / "model.safetensors"))
    after = load_file(str(tmp_path / "ft" / "model.safetensors"))
    changed = [k for k in before if k not in ("unit_vocab.weight", "session_vocab.weight")
               and not torch.equal(before[k], after[k])]
    assert "enc_atn.to_q.weight" in changed and "readouts.hand_vel.weight" in changed
    n = before["unit_vocab.weight"].shape[0]
    assert torch.equal(after["unit_vocab.weight"][:n], before["unit_vocab.weight"])
    # Both stages ran, each with its own log; --no-valid keeps the last epoch of each.
    logs = {}
    for stage in ("unit-id", "finetune"):
        with open(tmp_path / "ft" / "adapt" / "3" / stage / "train_log.csv") as f:
            logs[stage] = list(csv.DictReader(f))
        assert all(r["valid_r2"] in ("", "nan") for r in logs[stage])  # never scored on valid
        _, stage_meta = load_model(tmp_path / "ft" / "adapt" / "3" / stage)
        assert stage_meta["best"]["epoch"] + 1 == int(float(logs[stage][-1]["epoch"]))
        assert stage_meta["best"]["valid_r2"] is None
    assert int(logs["unit-id"][-1]["step"]) >= 4 and int(logs["finetune"][-1]["step"]) >= 3
    config = json.loads((tmp_path / "ft" / "adapt_config.json").read_text())
    assert config["sessions"] == ["new-0"] and config["model"] == "adapt/3/finetune"
    stages = config["timings"]["3"]["adapt"]["stages"]
    assert list(stages) == ["unit-id", "finetune"] and stages["finetune"]["steps"] == int(logs["finetune"][-1]["step"])


def test_learning_curve_files(pretrained, tmp_path, capsys):
    root = pretrained
    assert adapt(root, tmp_path / "lc", "--mode", "unit-id", "--labelled-trials", "2,all",
                 "--sessions", "new-1") == 0
    out = tmp_path / "lc"
    with open(out / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["mode", "requested", "labelled_trials", "labelled_seconds", "session", "r2_adapt",
                             "r2_scratch", "seconds_adapt", "seconds_scratch"]
    assert [(r["mode"], r["requested"], r["session"]) for r in rows] == [("unit-id", "2", "new-1"), ("unit-id", "all", "new-1")]
    assert int(rows[0]["labelled_trials"]) == 2 and int(rows[1]["labelled_trials"]) > 2
    for r in rows:  # both models scored, the scratch one trained on the same trials
        assert np.isfinite(float(r["r2_adapt"])) and np.isfinite(float(r["r2_scratch"]))
    assert json.loads((out / "learning_curve.json").read_text())[1]["requested"] == "all"
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "adapt_results.json").read_text())
    assert [r["method"] for r in results] == ["unit-id (2)", "scratch (2)", "unit-id (all)", "scratch (all)"]
    assert [float(r["r2_scratch"]) for r in rows] == pytest.approx([results[1]["r2"], results[3]["r2"]])
    scratch_model, scratch_meta = load_model(out / "scratch" / "2" / "new-1")
    assert scratch_model.session_vocab.names == ["new-1"] and scratch_meta["scratch"]["labelled_trials"] == 2
    # The run's own model is the last point's adaptation.
    last = load_file(str(out / "adapt" / "all" / "unit-id" / "model.safetensors"))
    top = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(last[k], top[k]) for k in top)
    assert "scratch" in capsys.readouterr().out


def test_missing_readout_is_refused_naming_the_models_readouts(pretrained, tmp_path, capsys):
    root = pretrained
    s = easy_session("cursor", seed=5, seconds=30.0)
    s = dataclasses.replace(s, series={"cursor_vel": s.series["hand_vel"]}, targets=["cursor_vel"])
    write_session(tmp_path / "cursor", s)
    code = main(["adapt", str(root / "run"), "--data", str(tmp_path / "cursor"), "--out", str(tmp_path / "x"), *FAST])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: session 'cursor' has none of the readouts the model decodes (hand_vel); "
        "its series: cursor_vel; prepare it with --target naming one of the readouts")
    assert not (tmp_path / "x").exists()


def test_known_session_is_refused_unless_reused(pretrained, tmp_path, capsys):
    root = pretrained
    code = main(["adapt", str(root / "run"), "--data", str(root / "old"), "--sessions", "easy-1",
                 "--out", str(tmp_path / "x"), *FAST])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: session 'easy-1' is already in the model's vocabulary; pass --reuse-session to train "
        "its existing rows again, or adapt to a session the model has not seen")
    assert not (tmp_path / "x").exists()
    # Reused: its own rows train, every other row and weight stays.
    assert main(["adapt", str(root / "run"), "--data", str(root / "old"), "--sessions", "easy-1", "--reuse-session",
                 "--labelled-trials", "2", "--out", str(tmp_path / "re"), *FAST]) == 0
    before = load_file(str(root / "run" / "model.safetensors"))
    after = load_file(str(tmp_path / "re" / "model.safetensors"))
    model, _ = load_model(root / "run")
    rows = model.unit_vocab.index([f"easy-1/u{k}" for k in range(12)])
    others = np.setdiff1d(np.arange(before["unit_vocab.weight"].shape[0]), rows)
    assert torch.equal(after["unit_vocab.weight"][others], before["unit_vocab.weight"][others])
    assert not torch.equal(after["unit_vocab.weight"][rows], before["unit_vocab.weight"][rows])
    assert torch.equal(after["session_vocab.weight"][1], before["session_vocab.weight"][1])  # easy-0


def test_empty_labelled_set_is_refused_before_anything_is_written(pretrained, tmp_path, capsys):
    code = adapt(pretrained, tmp_path / "x", "--labelled-trials", "0")
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "popdecode: error: --labelled-trials 0: the labelled set would be empty; give at least 1 trial")
    assert not (tmp_path / "x").exists()


def test_output_over_something_else_is_refused(pretrained, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert adapt(pretrained, tmp_path / "notes") == 2
    assert capsys.readouterr().err.strip() == (
        f"popdecode: error: {tmp_path / 'notes'} exists and is not a run directory; choose another --out")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_help_names_modes_and_files(capsys):
    with pytest.raises(SystemExit):
        main(["adapt", "--help"])
    text = capsys.readouterr().out
    for word in ("unit-id+finetune", "--labelled-trials", "learning_curve.png", "adapt_results.csv", "--no-valid"):
        assert word in text


def test_adapting_a_model_converted_from_torch_brain(pretrained, tmp_path):
    tb_models = pytest.importorskip("torch_brain.models")
    hp = dict(sequence_length=1.0, latent_step=0.125, num_latents_per_step=4, dim=32, depth=1, dim_head=16,
              cross_heads=1, self_heads=1, ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0)
    torch.manual_seed(0)
    ref = tb_models.POYO(dim_out=2, **hp)
    ref.unit_emb.initialize_vocab(["theirs/a", "theirs/b"])
    ref.session_emb.initialize_vocab(["theirs"])
    torch.save({"state_dict": ref.state_dict(), "hyper_parameters": {"model": hp}}, tmp_path / "tb.ckpt")
    assert main(["convert-torch-brain", str(tmp_path / "tb.ckpt"), "--out", str(tmp_path / "tb")]) == 0
    assert main(["adapt", str(tmp_path / "tb"), "--data", str(pretrained / "new"), "--sessions", "new-0",
                 "--labelled-trials", "3", "--out", str(tmp_path / "ad"), *FAST]) == 0
    before = load_file(str(tmp_path / "tb" / "model.safetensors"))
    after = load_file(str(tmp_path / "ad" / "model.safetensors"))
    for name, old in before.items():
        assert torch.equal(after[name][: old.shape[0]], old), name
    assert after["unit_vocab.weight"].shape[0] == 3 + 9
    model, meta = load_model(tmp_path / "ad")
    assert model.unit_vocab.names[:2] == ["theirs/a", "theirs/b"]
    # Their checkpoint has no target normalisation: it is measured on the labelled samples.
    assert meta["normalization_from_adaptation"] == ["hand_vel"]
    assert np.isfinite(json.loads((tmp_path / "ad" / "learning_curve.json").read_text())[0]["r2_adapt"])
    # Self-training keeps the normalisation of the true labels, not one of its own pseudo-labels.
    assert main(["adapt", str(tmp_path / "tb"), "--data", str(pretrained / "new"), "--sessions", "new-0",
                 "--labelled-trials", "3", "--self-train", "1", "--out", str(tmp_path / "st"), *FAST]) == 0
    _, st_meta = load_model(tmp_path / "st")
    assert st_meta["normalization"] == meta["normalization"]
    assert st_meta["normalization_from_adaptation"] == ["hand_vel"]


def test_adaptation_depends_on_its_seed_not_on_the_global_generator(pretrained, tmp_path):
    """The same command gives the same model whatever ran before it in the process."""
    weights = []
    for i, draws in enumerate((1, 1000)):
        torch.rand(draws)  # leave torch's global generator in a different state each time
        assert adapt(pretrained, tmp_path / f"ad{i}", "--mode", "unit-id", "--new-rows", "random",
                     "--labelled-trials", "3") == 0
        weights.append(load_file(str(tmp_path / f"ad{i}" / "model.safetensors")))
    assert set(weights[0]) == set(weights[1])
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_labelled_seconds_curve(pretrained, tmp_path, capsys):
    root = pretrained
    assert adapt(root, tmp_path / "sec", "--labelled-trials", "4s,9s", "--sessions", "new-0", "--no-scratch") == 0
    with open(tmp_path / "sec" / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["requested"] for r in rows] == ["4s", "9s"]
    assert [float(r["labelled_seconds"]) for r in rows] == pytest.approx([4.0, 9.0])
    assert all(r["r2_scratch"] == "" for r in rows)
    _, meta = load_model(tmp_path / "sec")
    assert meta["adaptation"]["labelled_seconds"] == {"new-0": pytest.approx(9.0)}


def test_mixture_rows_are_blends_of_known_rows_and_nothing_else_moves(pretrained, tmp_path, capsys):
    root = pretrained
    assert adapt(root, tmp_path / "mix", "--new-rows", "mixture", "--labelled-trials", "3", "--sessions", "new-0") == 0
    before = load_file(str(root / "run" / "model.safetensors"))
    after = load_file(str(tmp_path / "mix" / "model.safetensors"))
    assert set(before) == set(after)  # an ordinary model: no mixing weights saved
    for name, old in before.items():
        if name in ("unit_vocab.weight", "session_vocab.weight"):
            n = old.shape[0]
            assert torch.equal(after[name][:n], old), name
            known, new = old[1:], after[name][n:]
            # Convex combinations of the known rows: inside their range in every dimension,
            # and no longer all equal to the mean they started from.
            assert torch.all(new >= known.min(0).values - 1e-6) and torch.all(new <= known.max(0).values + 1e-6)
            if name == "unit_vocab.weight":
                assert not torch.allclose(new, known.mean(0).expand_as(new), atol=1e-7)
        else:
            assert torch.equal(after[name], old), name
    config = json.loads((tmp_path / "mix" / "adapt_config.json").read_text())["config"]
    assert config["new_rows"] == "mixture" and config["lr"] == pytest.approx(0.1)
    with open(tmp_path / "mix" / "adapt" / "3" / "unit-id" / "train_config.json") as f:
        assert json.load(f)["optimizer"] == "adamw"


def test_alignment_changes_only_the_new_rows_and_reads_the_prior_from_the_training_stores(pretrained, tmp_path):
    root = pretrained
    common = ("--labelled-trials", "3", "--sessions", "new-0")
    assert adapt(root, tmp_path / "plain", *common) == 0
    assert adapt(root, tmp_path / "aligned", *common, "--align", "1") == 0
    before = load_file(str(root / "run" / "model.safetensors"))
    plain = load_file(str(tmp_path / "plain" / "model.safetensors"))
    aligned = load_file(str(tmp_path / "aligned" / "model.safetensors"))
    for name, old in before.items():
        if name == "unit_vocab.weight":
            n = old.shape[0]
            assert torch.equal(aligned[name][:n], old)
            assert not torch.equal(aligned[name][n:], plain[name][n:])  # the term did something
        elif name != "session_vocab.weight":
            assert torch.equal(aligned[name], old), name
    config = json.loads((tmp_path / "aligned" / "adapt_config.json").read_text())["config"]
    assert config["align"] == 1.0


def test_alignment_with_a_missing_prior_store_is_refused(pretrained, tmp_path, capsys):
    code = adapt(pretrained, tmp_path / "x", "--labelled-trials", "3", "--sessions", "new-0", "--align", "1",
                 "--prior-data", str(tmp_path / "nowhere"))
    err = capsys.readouterr().err
    assert code != 0 and "nowhere is not there" in err and "--prior-data" in err
    assert not (tmp_path / "x").exists()


def test_tuning_start_moves_where_mixtures_start_and_reads_the_training_stores(pretrained, tmp_path):
    root = pretrained
    common = ("--labelled-trials", "3", "--sessions", "new-0", "--steps", "1")
    assert adapt(root, tmp_path / "mean", *common) == 0
    assert adapt(root, tmp_path / "tuned", *common, "--mixture-start", "tuning") == 0
    n = load_file(str(root / "run" / "model.safetensors"))["unit_vocab.weight"].shape[0]
    mean = load_file(str(tmp_path / "mean" / "model.safetensors"))["unit_vocab.weight"][n:]
    tuned = load_file(str(tmp_path / "tuned" / "model.safetensors"))["unit_vocab.weight"][n:]
    # One step from zero logits leaves every new unit near the average; from tuning they differ.
    assert tuned.std(dim=0).mean() > 3 * mean.std(dim=0).mean()
    config = json.loads((tmp_path / "tuned" / "adapt_config.json").read_text())["config"]
    assert config["mixture_start"] == "tuning" and config["mixture_bandwidth"] == 1.0
    _, meta = load_model(tmp_path / "tuned")
    assert meta["adaptation"]["mixture_start"] == "tuning" and meta["adaptation"]["new_rows"] == "mixture"


def test_tuning_start_without_the_training_stores_or_with_free_rows_is_refused(pretrained, tmp_path, capsys):
    common = ("--labelled-trials", "3", "--sessions", "new-0", "--mixture-start", "tuning")
    code = adapt(pretrained, tmp_path / "x", *common, "--prior-data", str(tmp_path / "nowhere"))
    err = capsys.readouterr().err
    assert code != 0 and "--mixture-start tuning needs the sessions the model was trained on" in err
    assert "nowhere is not there" in err and not (tmp_path / "x").exists()
    assert adapt(pretrained, tmp_path / "y", *common, "--new-rows", "random") != 0
    assert "it needs --new-rows mixture and --mode unit-id" in capsys.readouterr().err
    assert adapt(pretrained, tmp_path / "w", *common, "--mode", "finetune") != 0
    assert "it needs --new-rows mixture and --mode unit-id" in capsys.readouterr().err
    assert adapt(pretrained, tmp_path / "z", *common, "--mixture-bandwidth", "0") != 0
    assert "--mixture-bandwidth must be positive" in capsys.readouterr().err


def test_self_training_adapts_again_on_pseudo_labels_and_keeps_the_network_frozen(pretrained, tmp_path, capsys):
    root = pretrained
    common = ("--labelled-trials", "3", "--sessions", "new-0")
    assert adapt(root, tmp_path / "st", *common, "--self-train", "1") == 0
    assert "[3] self-training, best valid R^2 of each round: " in capsys.readouterr().out
    before = load_file(str(root / "run" / "model.safetensors"))
    after = load_file(str(tmp_path / "st" / "model.safetensors"))
    first = load_file(str(tmp_path / "st" / "adapt" / "3" / "round-0" / "unit-id" / "model.safetensors"))
    for name, old in before.items():
        if name == "unit_vocab.weight":
            n = old.shape[0]
            assert torch.equal(after[name][:n], old)
            assert not torch.equal(after[name][n:], first[name][n:])  # the second round learned other rows
        elif name != "session_vocab.weight":
            assert torch.equal(after[name], old), name
    _, meta = load_model(tmp_path / "st")
    # The record says what was really labelled: 3 trials, the rest pseudo-labelled.
    assert meta["adaptation"]["labelled_trials"] == {"new-0": 3}
    assert meta["adaptation"]["self_train"] == 1 and meta["adaptation"]["pseudo_labelled_trials"]["new-0"] > 0
    timings = json.loads((tmp_path / "st" / "adapt_config.json").read_text())["timings"]["3"]["adapt"]
    assert len(timings["rounds"]) == 2
    assert timings["seconds"] == pytest.approx(sum(r["seconds"] for r in timings["rounds"]), abs=0.02)

    # With every trial labelled there is nothing to pseudo-label: one round only.
    assert adapt(root, tmp_path / "all", "--labelled-trials", "all", "--sessions", "new-0", "--self-train", "1") == 0
    assert not (tmp_path / "all" / "adapt" / "all" / "round-0").exists()


def test_negative_self_training_rounds_are_refused(pretrained, tmp_path, capsys):
    code = adapt(pretrained, tmp_path / "x", "--labelled-trials", "3", "--self-train", "-1")
    assert code != 0 and "--self-train must be 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
