"""popdecode train from the command line: a real preset for one step, and its error messages."""

from __future__ import annotations

import json

import pytest
import torch

from popdecode.cli import main
from popdecode.data.store import write_session
from train.easy_data import easy_sessions


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for s in easy_sessions(2, seconds=30.0):
        write_session(root, s)
    return root


def test_one_step_of_the_real_preset(store, tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        code = main(["train", "--data", str(store), "--out", str(tmp_path / "run"), "--preset", "poyo-1.3M",
                     "--batch-size", "4", "--max-steps", "1", "--threads", "1", "--sessions", "easy-1",
                     "--model-option", "depth=2", "--model-option", "lin_dropout=0.3"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    out = capsys.readouterr().out
    # --preset given: the recipe's changes to the preset are dropped, the rest still apply
    assert out.startswith("recipe small-data (0.3 min of training data, under 5 h): poyo-1.3M depth=2 lin_dropout=0.3, "
                          "batch 4, lr 0.003, ")
    assert "\ntrained 1 steps in " in out
    assert "stopped early (max steps); continue with --resume" in out
    doc = json.loads((tmp_path / "run" / "model.json").read_text())
    assert doc["session_vocab"] == ["easy-1"] and len(doc["unit_vocab"]) == 12
    assert doc["meta"]["train_config"]["batch_size"] == 4
    assert doc["config"]["depth"] == 2 and doc["config"]["lin_dropout"] == 0.3 and doc["config"]["dim"] == 64
    assert doc["meta"]["train_config"]["loss_weights"]["reach"] == 5.0


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1 (got 0)"),
    (["--sessions", "rat*"], "no session matches 'rat*'; sessions in the data: easy-0, easy-1"),
    (["--exclude-sessions", "easy-*"], "the session filters leave no session; loosen --sessions / --exclude-sessions"),
    (["--preset", "poyo-9B"], "unknown preset 'poyo-9B'; choose one of poyo-1.3M, poyo-11.8M"),
    (["--model-option", "width=3"], "--model-option expects KEY=VALUE with KEY one of atn_dropout, cross_heads, depth, "
     "dim, dim_head, emb_init_scale, ffn_dropout, latent_step, lin_dropout, num_latents_per_step, self_heads, t_max, "
     "t_min, window_length; got 'width=3'"),
    (["--loss-weight", "reach"], "--loss-weight expects SET=WEIGHT such as reach=5, got 'reach'"),
    (["--end-only"], "--end-only trains on the end queries alone: give --end-queries N (e.g. 16) too"),
    (["--end-queries", "4", "--end-span", "-0.1"], "--end-span must be between 0 and the window's 1 s (got -0.1)"),
    pytest.param(["--tensorboard"], "--tensorboard needs the tensorboard package: pip install 'popdecode[tensorboard]', "
                 "or drop the flag", marks=pytest.mark.skipif(_has_tensorboard(), reason="tensorboard is installed")),
    (["--resume"], "nothing to resume in {out}: no checkpoint/state.json there; drop --resume to start a new run"),
])
def test_bad_input_is_one_line(store, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", "--data", str(store), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"popdecode: error: {message.format(out=out)}\n"
    assert not out.exists()  # nothing written


def test_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--data", "--preset", "--time-budget", "--resume", "--precision", "--exclude-sessions"):
        assert flag in out


def test_sampling_and_readout_balance_are_stored_and_kept_on_resume(store, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train", "--data", str(store), "--out", str(run), "--batch-size", "4", "--threads", "1",
              "--epochs", "1", "--model-option", "depth=1", "--model-option", "dim=32"]
    threads = torch.get_num_threads()
    try:
        # both differ from the small-data recipe's (session, windows), which a resume must not take
        assert main([*common, "--sampling", "sqrt", "--readout-balance", "readouts", "--max-steps", "1"]) == 0
        assert json.loads((run / "train_config.json").read_text())["sampling"] == "sqrt"
        assert main([*common, "--resume", "--max-steps", "2"]) == 0  # no flags: the run's own
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((run / "train_config.json").read_text())
    assert (saved["sampling"], saved["readout_balance"]) == ("sqrt", "readouts")
    assert json.loads((run / "model.json").read_text())["meta"]["train_config"]["sampling"] == "sqrt"
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--sampling", "uniform"])
    assert exit_.value.code == 2
    assert "invalid choice: 'uniform'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, expected", [
    ([], {"recipe": "small-data", "batch_size": 16, "lr": 3e-3, "sampling": "session", "readout_balance": "windows"}),
    (["--recipe", "paper"], {"recipe": "paper", "batch_size": 32, "lr": None, "sampling": "duration", "epochs": 100,
                             "eval_every": 1, "readout_balance": "readouts"}),
    (["--recipe", "paper", "--sampling", "session", "--lr", "0.002"],
     {"recipe": "paper", "batch_size": 32, "lr": 0.002, "sampling": "session"}),
])
def test_the_recipe_fills_what_the_flags_leave_unsaid(store, tmp_path, capsys, flags, expected):
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--data", str(store), "--out", str(run), "--threads", "1", "--max-steps", "1",
                     "--sessions", "easy-1", *flags]) == 0
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((run / "train_config.json").read_text())
    assert {k: saved[k] for k in expected} == expected
    config = json.loads((run / "model.json").read_text())["config"]
    if expected["recipe"] == "paper":
        assert saved["model_overrides"] == {} and config["depth"] == 6
    else:
        # 64,000 windows, 16 per epoch (easy-1's train trials hold 16 one-second windows)
        assert saved["epochs"] == 4000 and saved["eval_every"] == 200
        assert saved["model_overrides"] == {"depth": 2, "num_latents_per_step": 8, "cross_heads": 1, "self_heads": 2}
        assert config["depth"] == 2 and config["self_heads"] == 2
    assert capsys.readouterr().out.startswith(f"recipe {expected['recipe']} (")
