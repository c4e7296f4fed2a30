"""Data-parallel training (torchrun's environment, gloo on the CPU): two processes make the
run one process makes, resume bit for bit, and refuse what they cannot do."""

from __future__ import annotations

import csv
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from popdecode.errors import UserError
from popdecode.train import distributed
from popdecode.train.config import TrainConfig
from popdecode.train.trainer import build_model, fit
from train.easy_data import TINY_MODEL, easy_sessions, two_task_sessions
from train.easy_data import tiny_config as config

WITH_DROPOUT = {**TINY_MODEL, "ffn_dropout": 0.2, "lin_dropout": 0.2, "atn_dropout": 0.2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sessions(pool: str):
    return two_task_sessions() if pool == "two tasks" else easy_sessions(2)


def _worker(rank: int, world_size: int, port: int, cfg: TrainConfig, out_dir: str, resume: bool, report: str,
            pool: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), POPDECODE_PROGRESS="0")
    torch.set_num_threads(1)
    sessions = _sessions(pool)
    model, meta = build_model(cfg, sessions)
    out = fit(model, sessions, cfg, out_dir, meta=meta, resume=resume)
    with open(f"{report}.rank{rank}.json", "w") as f:
        json.dump({k: out[k] for k in ("steps", "best_valid_r2", "best_epoch", "stopped", "valid_r2")}, f)


def run_processes(cfg: TrainConfig, out_dir, tmp_path, *, resume: bool = False, world_size: int = 2,
                  pool: str = "easy") -> list[dict]:
    report = str(tmp_path / f"report-{os.path.basename(out_dir)}-{int(resume)}")
    mp.spawn(_worker, args=(world_size, _free_port(), cfg, str(out_dir), resume, report, pool), nprocs=world_size)
    return [json.load(open(f"{report}.rank{r}.json")) for r in range(world_size)]


def run_one(cfg: TrainConfig, out_dir, pool: str = "easy") -> dict:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sessions = _sessions(pool)
        model, meta = build_model(cfg, sessions)
        return fit(model, sessions, cfg, out_dir, meta=meta)
    finally:
        torch.set_num_threads(n)


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def losses(run) -> list[float]:
    with open(run / "train_log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(autouse=True)
def not_under_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_two_processes_make_the_run_one_process_makes(tmp_path):
    # No dropout of any kind: the only difference left is the order of floating-point sums.
    # Six steps stay inside the first epoch, before its last (partial) batch.
    cfg = config(unit_dropout=False, max_steps=6)
    one = run_one(cfg, tmp_path / "one")
    reports = run_processes(cfg, tmp_path / "two", tmp_path)

    assert reports[0] == reports[1]  # every process took the same decisions
    assert reports[0]["steps"] == one["steps"] == 6 and reports[0]["stopped"] == "max steps"
    # Each process scored one of the two sessions; together they are one process's scores.
    assert reports[0]["valid_r2"] == pytest.approx(one["valid_r2"], abs=1e-4)
    assert reports[0]["best_valid_r2"] == pytest.approx(one["best_valid_r2"], abs=1e-4)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5, msg=name)
    # The optimiser's moments follow the gradients themselves (LAMB's steps would not show
    # a gradient off by a constant factor).
    s1, s2 = (load_file(str(tmp_path / run / "checkpoint" / "optimizer.safetensors")) for run in ("one", "two"))
    moments = [k for k in s1 if k.startswith("state/")]
    assert moments and {k for k in s2 if k.startswith("state/")} == set(moments)
    for name in moments:
        torch.testing.assert_close(s2[name], s1[name], rtol=1e-4, atol=1e-7, msg=name)
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    # Rank 0 alone wrote the run, and left nothing half-written.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_two_processes_share_readouts_by_the_whole_steps_windows(tmp_path):
    # Two readouts, one per session, and each process holds 4 of a step's 8 windows: the
    # shares of --readout-balance windows must be the step's, not each process's own.
    cfg = config(unit_dropout=False, max_steps=4, readout_balance="windows")
    one = run_one(cfg, tmp_path / "one", pool="two tasks")
    run_processes(cfg, tmp_path / "two", tmp_path, pool="two tasks")
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5, msg=name)
    assert one["steps"] == 4


def test_two_processes_resume_bit_for_bit(tmp_path):
    # Dropout on: each process's own generator state must come back from the checkpoint.
    cfg = config(model_overrides=dict(WITH_DROPOUT), max_steps=11)
    run_processes(cfg, tmp_path / "straight", tmp_path)
    stopped = run_processes(config(model_overrides=dict(WITH_DROPOUT), max_steps=5), tmp_path / "resumed", tmp_path)
    assert stopped[0]["steps"] == 5
    resumed = run_processes(cfg, tmp_path / "resumed", tmp_path, resume=True)
    assert resumed[0]["steps"] == 11

    w_straight, w_resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for name in w_straight:
        assert torch.equal(w_straight[name], w_resumed[name]), name
    # The two processes drew different dropout masks: the checkpoint keeps both states.
    rng = load_file(str(tmp_path / "straight" / "checkpoint" / "optimizer.safetensors"))
    assert not torch.equal(rng["rng/torch/rank0"], rng["rng/torch/rank1"])
    assert torch.equal(rng["rng/torch"], rng["rng/torch/rank0"])


def test_the_global_batch_must_divide_among_the_processes():
    world = distributed.World(rank=1, size=4, local_rank=1)
    assert distributed.local_batch_size(32, world) == 8
    with pytest.raises(UserError, match="--batch-size 30 is the global batch .* multiple of 4"):
        distributed.local_batch_size(30, world)


def test_the_world_comes_from_torchrun_variables(monkeypatch):
    assert distributed.from_env() == distributed.World(rank=0, size=1, local_rank=0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    world = distributed.from_env()
    assert (world.rank, world.size, world.local_rank, world.is_main, world.distributed) == (2, 4, 0, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UserError, match="RANK=4 is outside WORLD_SIZE=4"):
        distributed.from_env()
