"""The training loop: it learns, writes its files, resumes bit for bit, freezes what it must."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from popdecode.errors import UserError
from popdecode.model.io import load_model
from popdecode.train import setup
from popdecode.train.trainer import build_model, fit
from train.easy_data import TINY_MODEL, easy_sessions
from train.easy_data import tiny_config as config


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sessions():
    return easy_sessions(2)


def test_training_learns_and_writes_the_run(sessions, tmp_path):
    cfg = config(epochs=12)
    model, meta = build_model(cfg, sessions)
    out = fit(model, sessions, cfg, tmp_path / "run", meta=meta)
    log = out["log"]
    assert len(log) == 12 and out["steps"] == 12 * 8  # 2 sessions x ~30 windows / batch 8
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert out["best_valid_r2"] > 0.5
    assert set(out["valid_r2"]) == {"easy-0", "easy-1"}

    run = tmp_path / "run"
    for name in ("model.safetensors", "model.json", "train_log.csv", "train_config.json",
                 "checkpoint/model.safetensors", "checkpoint/optimizer.safetensors", "checkpoint/state.json"):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporaries left
    with open(run / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "step", "loss", "lr", "valid_r2", "valid_r2/easy-0", "valid_r2/easy-1",
                             "windows_per_s", "data_share", "elapsed_s"]
    assert all(0.0 < float(r["data_share"]) < 1.0 for r in rows)  # waiting for batches: some, not all
    assert [float(r["loss"]) for r in rows] == pytest.approx([r["loss"] for r in log])

    # The saved model is the best epoch's, with what evaluation needs in its meta.
    best, saved_meta = load_model(run)
    assert saved_meta["best"]["epoch"] == out["best_epoch"]
    assert saved_meta["best"]["valid_r2"] == pytest.approx(out["best_valid_r2"])
    assert saved_meta["session_readouts"] == {"easy-0": ["hand_vel"], "easy-1": ["hand_vel"]}
    norm = setup.normalization_from_meta(saved_meta)["hand_vel"]
    values = np.concatenate([s.series["hand_vel"].values[s.split("train").contains(s.series["hand_vel"].timestamps)]
                             for s in sessions])
    np.testing.assert_allclose(norm[0], values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm[1], values.std(0), rtol=1e-5)
    assert json.loads((run / "train_config.json").read_text())["epochs"] == 12


def weights(path):
    return load_file(str(path / "checkpoint" / "model.safetensors"))


@pytest.fixture(scope="module")
def uneven():
    """A long and a short session: the sampling modes deal their windows differently."""
    from train.easy_data import easy_session

    return [easy_session("easy-0", seed=100), easy_session("easy-1", seed=101, seconds=24.0)]


@pytest.mark.parametrize("optimizer, stop_after, sampling", [("lamb", 8, "duration"), ("lamb", 5, "duration"),
                                                             ("adamw", 5, "duration"), ("lamb", 5, "session"),
                                                             ("lamb", 3, "sqrt")],
                         ids=["epoch-end", "mid-epoch", "adamw-mid-epoch", "session-mid-epoch", "sqrt-mid-epoch"])
def test_resume_ends_bit_for_bit_like_an_uninterrupted_run(sessions, uneven, tmp_path, stop_after, optimizer,
                                                           sampling):
    if sampling != "duration":
        sessions = uneven
    # Dropout and unit dropout on, so the random streams matter.
    over = {**TINY_MODEL, "ffn_dropout": 0.2, "lin_dropout": 0.3, "atn_dropout": 0.1}
    cfg = config(model_overrides=over, optimizer=optimizer, sampling=sampling)
    model, meta = build_model(cfg, sessions)
    straight = fit(model, sessions, cfg, tmp_path / "straight", meta=meta)

    model, meta = build_model(cfg, sessions)
    first = fit(model, sessions, config(model_overrides=over, optimizer=optimizer, max_steps=stop_after,
                                        sampling=sampling), tmp_path / "resumed", meta=meta)
    assert first["stopped"] == "max steps" and first["steps"] == stop_after
    model, meta = build_model(cfg, sessions)
    second = fit(model, sessions, cfg, tmp_path / "resumed", meta=meta, resume=True)
    assert second["steps"] == straight["steps"] == (16 if sampling == "duration" else 12)

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = load_file(str(tmp_path / "straight" / "checkpoint" / "optimizer.safetensors"))
    ob = load_file(str(tmp_path / "resumed" / "checkpoint" / "optimizer.safetensors"))
    for k in oa:
        if k.startswith("state/"):
            assert torch.equal(oa[k], ob[k]), k
    assert second["log"][-1]["loss"] == straight["log"][-1]["loss"]


def test_adaptation_trains_only_the_new_rows(sessions, tmp_path):
    cfg = config(epochs=1)
    model, meta = build_model(cfg, sessions[:1])
    fit(model, sessions[:1], cfg, tmp_path / "base", meta=meta)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_units, n_sessions = model.unit_vocab.weight.shape[0], model.session_vocab.weight.shape[0]

    new = sessions[1:]
    setup.register_sessions(model, new)
    new_rows_init = model.unit_vocab.weight.detach()[n_units:].clone()
    meta = {**meta, "session_readouts": {**meta["session_readouts"], "easy-1": ["hand_vel"]}}
    unit_rows = np.zeros(model.unit_vocab.weight.shape[0], dtype=bool)
    unit_rows[n_units:] = True
    session_rows = np.zeros(model.session_vocab.weight.shape[0], dtype=bool)
    session_rows[n_sessions:] = True
    fit(model, new, cfg, tmp_path / "adapted", meta=meta,
        trainable=[model.unit_vocab.weight, model.session_vocab.weight],
        row_masks={"unit_vocab.weight": unit_rows, "session_vocab.weight": session_rows})

    after = model.state_dict()
    for k, v in before.items():
        if k == "unit_vocab.weight":
            assert torch.equal(after[k][:n_units], v)
            assert not torch.equal(after[k][n_units:], new_rows_init)  # the new rows learned
        elif k == "session_vocab.weight":
            assert torch.equal(after[k][:n_sessions], v)
        else:
            assert torch.equal(after[k], v), k


def test_time_budget_stops_cleanly_and_keeps_a_model(sessions, tmp_path):
    cfg = config(epochs=50, time_budget_min=1e-9)
    model, meta = build_model(cfg, sessions)
    out = fit(model, sessions, cfg, tmp_path / "run", meta=meta)
    assert out["stopped"] == "time budget" and out["steps"] == 1
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert out["best_valid_r2"] is not None


def test_refuses_to_overwrite_or_resume_nothing(sessions, tmp_path):
    cfg = config(epochs=1, max_steps=1)
    model, meta = build_model(cfg, sessions)
    with pytest.raises(UserError, match=r"nothing to resume in .*run: no checkpoint/state.json there; drop --resume"):
        fit(model, sessions, cfg, tmp_path / "run", meta=meta, resume=True)
    fit(model, sessions, cfg, tmp_path / "run", meta=meta)
    with pytest.raises(UserError, match=r"already holds a training run; pass --resume to continue it"):
        fit(model, sessions, cfg, tmp_path / "run", meta=meta)


def test_no_training_windows_is_a_clear_error(tmp_path):
    from popdecode.data.intervals import Intervals

    s = easy_sessions(1)[0]
    s.intervals["train"] = Intervals(np.array([0.0]), np.array([0.5]))
    cfg = config()
    model, meta = build_model(cfg, [s])
    with pytest.raises(UserError, match=r"^no training windows: no train interval of the selected sessions lasts 1 s"):
        fit(model, [s], cfg, tmp_path / "run", meta=meta)
    assert not (tmp_path / "run").exists()


class CrashAfter:
    """A session that raises after a shared number of window reads: a run dying mid-epoch."""

    def __init__(self, session, counter: list, limit: int):
        self._s, self._counter, self._limit = session, counter, limit

    def __getattr__(self, name):
        return getattr(self._s, name)

    def window(self, *args, **kwargs):
        self._counter[0] += 1
        if self._counter[0] > self._limit:
            raise RuntimeError("simulated crash")
        return self._s.window(*args, **kwargs)


def test_crash_mid_epoch_resumes_from_the_periodic_checkpoint(sessions, tmp_path):
    over = {**TINY_MODEL, "lin_dropout": 0.3}
    cfg = config(model_overrides=over, checkpoint_every_steps=5)
    model, meta = build_model(cfg, sessions)
    fit(model, sessions, cfg, tmp_path / "straight", meta=meta)

    counter = [0]
    crashing = [CrashAfter(s, counter, limit=8 * 6 + 3) for s in sessions]  # dies inside step 7
    model, meta = build_model(cfg, sessions)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(model, crashing, cfg, tmp_path / "crashed", meta=meta)
    state = json.loads((tmp_path / "crashed" / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 5, 5)

    model, meta = build_model(cfg, sessions)
    fit(model, sessions, cfg, tmp_path / "crashed", meta=meta, resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "crashed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_selection_ignores_sessions_with_undefined_r2():
    from popdecode.train.trainer import selection_score

    assert selection_score({"a": 0.5, "b": float("-inf"), "c": 0.7}) == pytest.approx(0.6)
    assert np.isnan(selection_score({"a": float("-inf")}))
    assert np.isnan(selection_score({}))


def test_causal_selection_keeps_the_best_causal_model_on_the_same_trajectory(sessions, tmp_path):
    from popdecode.evaluate.predict import predict_split, score
    from popdecode.evaluate.results import mean_r2

    runs = {}
    for select in ("stitched", "causal"):
        cfg = config(epochs=4, select=select)
        model, meta = build_model(cfg, sessions)
        runs[select] = fit(model, sessions, cfg, tmp_path / select, meta=meta)
    # Which valid R^2 is computed must not touch training: the same losses, step for step.
    assert [r["loss"] for r in runs["causal"]["log"]] == [r["loss"] for r in runs["stitched"]["log"]]

    # The kept model's recorded score is its causal valid R^2, recomputed here from the saved model.
    model, meta = load_model(tmp_path / "causal")
    tokenizer = setup.make_tokenizer(model, sessions, meta, train=False, window_length=model.config.window_length)
    r2 = {}
    for causal in (False, True):
        stitched = predict_split(model, sessions, tokenizer, split="valid", causal=causal,
                                 normalization=setup.normalization_from_meta(meta))
        r2[causal] = mean_r2(score(stitched, method="poyo", split="valid"))
    assert meta["best"]["valid_r2"] == pytest.approx(r2[True], abs=1e-6)
    assert abs(r2[True] - r2[False]) > 1e-3  # the two scores differ, so the check above can fail
    logged = [r["valid_r2"] for r in runs["causal"]["log"]]
    assert runs["causal"]["best_valid_r2"] == pytest.approx(max(logged))


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_embedding_tables_move_at_their_own_rate(sessions, tmp_path, scale):
    # LAMB moves every tensor by lr x |w| in norm (the touched rows only, for the tables), so
    # after one step the tables' change is exactly scale x that and the rest's is lr x |w|.
    cfg = config(epochs=1, max_steps=1, lr=1e-3, embedding_lr_scale=scale)
    model, meta = build_model(cfg, sessions)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    fit(model, sessions, cfg, tmp_path / "run", meta=meta)
    after = dict(model.named_parameters())
    for name in ("unit_vocab.weight", "session_vocab.weight", "readouts.hand_vel.weight"):
        w, new = before[name], after[name].detach()
        moved = (new != w).reshape(w.shape[0], -1).any(dim=1) if "vocab" in name else slice(None)
        rate = 1e-3 * (scale if "vocab" in name else 1.0)
        assert torch.linalg.vector_norm(new[moved] - w[moved]) == pytest.approx(
            rate * torch.linalg.vector_norm(w[moved]), rel=1e-3), name


def test_a_non_positive_embedding_rate_is_refused():
    with pytest.raises(UserError, match="--embedding-lr-scale must be positive"):
        config(embedding_lr_scale=0)
