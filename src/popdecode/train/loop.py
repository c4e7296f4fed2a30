"""One training run's steps and epochs: what :func:`popdecode.train.trainer.fit` repeats.

:func:`popdecode.train.trainer.fit` sets a run up (model, optimiser, data, where a resumed run
stands) into a :class:`Run`, then calls, epoch after epoch:

1. :func:`train_epoch`: the batches of this epoch's windows (from where a resumed run
   stopped), each one :func:`train_step` (forward, loss, backward, optimiser step), then
   :func:`after_step` (counters, progress bar, periodic checkpoint) and :func:`stop_reason`
   (time budget, step limit);
2. :func:`validate_and_keep_best` when the epoch is one to validate (or the run stops):
   R^2 per session on the valid split, and the best model so far saved as the run's model;
3. :func:`log_epoch` (a row of ``train_log.csv``) and :func:`end_epoch` (counters reset,
   resumable checkpoint).

Everything that must survive a resume lives in ``Run.state`` (a plain dict, saved in the
checkpoint's ``state.json``); the rest is rebuilt identically from the configuration.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from popdecode.evaluate.predict import autocast, predict_split, score
from popdecode.evaluate.results import mean_r2
from popdecode.tokenize.batch import Batch
from popdecode.tokenize.collate import collate
from popdecode.train import distributed, setup
from popdecode.train.checkpoint import save_checkpoint
from popdecode.train.config import TrainConfig
from popdecode.train.schedule import lr_at
from popdecode.utils.atomic import atomic_path

LOG_FILE = "train_log.csv"


def new_state() -> dict:
    """Where a fresh run stands (a checkpoint's ``state.json`` replaces it on resume)."""
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": None, "best_epoch": None,
            "best_valid": {}, "elapsed_s": 0.0, "log": [],
            "epoch_loss_sum": 0.0, "epoch_windows": 0, "epoch_train_s": 0.0, "epoch_data_s": 0.0}


@dataclass
class Run:
    """What the steps and epochs of one run share; built once by ``fit``."""

    model: torch.nn.Module
    net: torch.nn.Module  # what the steps call: ``model``, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    sessions: Sequence
    config: TrainConfig
    meta: dict
    out_dir: Path
    world: distributed.World
    device: torch.device
    masks: dict[str, torch.Tensor]  # parameter name -> rows allowed to change
    named: dict[str, torch.nn.Parameter]
    sampler: Any  # TrainWindowSampler
    dataset: Any  # WindowDataset over the sampler
    eval_tokenizer: Any
    batch_size: int  # this process's share of the global batch
    steps_per_epoch: int
    total_steps: int
    extra_loss: Callable | None
    state: dict
    writer: Any  # TensorBoard SummaryWriter or None
    bar: Any  # progress bar
    clock0: float  # perf_counter at the (virtual) start of training, over resumes
    started: float  # perf_counter at the start of this invocation (the time budget's)
    budget_s: float | None


# --- one step -----------------------------------------------------------------------------

def weighted_mse(predictions: dict[str, torch.Tensor], batch: Batch,
                 totals: dict[str, torch.Tensor] | None = None,
                 shares: dict[str, float] | None = None) -> torch.Tensor:
    """Sum over readouts of sum(w * mse) / sum(w); readouts with no weight are skipped.

    ``totals``: each readout's sum(w) over a larger batch that this one is a shard of
    (several processes, :func:`popdecode.train.distributed.step_totals`); default: this
    batch's own. ``shares``: a factor per readout (``--readout-balance windows``: its share
    of the batch's windows); default 1 for each.
    """
    total = None
    for name, t in batch.targets.items():
        if name not in predictions:
            continue
        w = t.weights
        w_sum = w.sum() if totals is None else totals[name]
        if float(w_sum) <= 0:
            continue
        mse = (predictions[name].float() - t.values).pow(2).mean(dim=-1)
        term = (w * mse).sum() / w_sum
        if shares is not None:
            term = term * shares[name]
        total = term if total is None else total + term
    if total is None:
        # No supervised sample in the batch: a zero loss that still reaches every parameter
        # used, so backward() works and the step changes nothing but the moments' decay.
        total = sum(p.sum() * 0.0 for p in predictions.values())
    return total


def train_step(run: Run, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Forward, loss, backward and one optimiser step at the scheduled rate.

    Returns this process's weighted MSE, the extra loss term (or None) and the rate used.
    """
    config, world = run.config, run.world
    lr = lr_at(run.state["global_step"], run.total_steps, config.peak_lr)
    for g in run.optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    totals, shares = distributed.step_totals(batch, run.model.readout_names, world, run.device,
                                             with_shares=config.readout_balance == "windows")
    with autocast(run.device, config.precision):
        preds = run.net(batch)
    mse = weighted_mse(preds, batch, totals, shares)
    # Gradients are averaged over the processes: each one's share counts N times.
    loss = mse * world.size
    extra = None
    if run.extra_loss is not None:
        with autocast(run.device, config.precision):
            extra = run.extra_loss(run.model, run.device)
        loss = loss + extra
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for name, rows in run.masks.items():
        grad = run.named[name].grad
        if grad is not None:
            grad[~rows] = 0
    run.optimizer.step()
    return mse, extra, lr


def after_step(run: Run, batch: Batch, mse: torch.Tensor, extra: torch.Tensor | None, lr: float,
               epoch: int, tick: float) -> tuple[float, float]:
    """Count the step, show it, log it; return (now, processes out of time).

    One all-reduce carries the whole step's loss and whether any process ran out of time.
    """
    state, world = run.state, run.world
    now = time.perf_counter()
    over_budget = run.budget_s is not None and now - run.started >= run.budget_s
    mse_value, over_votes = distributed.all_sum([float(mse.detach()), float(over_budget)], world, run.device)
    loss_value = mse_value + (0.0 if extra is None else float(extra.detach()))
    state["global_step"] += 1
    state["step_in_epoch"] += 1
    state["epoch_loss_sum"] += loss_value * batch.size * world.size
    state["epoch_windows"] += batch.size * world.size
    state["epoch_train_s"] += now - tick
    run.bar.update(1)
    run.bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}",
                        r2="-" if state["best_score"] is None else f"{state['best_score']:.3f}",
                        win_s=f"{state['epoch_windows'] / max(state['epoch_train_s'], 1e-9):.0f}")
    if run.writer is not None:
        run.writer.add_scalar("train/loss", loss_value, state["global_step"])
        run.writer.add_scalar("train/lr", lr, state["global_step"])
    return now, over_votes


def stop_reason(run: Run, over_votes: float) -> str | None:
    """Why the run stops after this step: "time budget", "max steps", or None to go on."""
    if over_votes > 0:
        return "time budget"
    if run.config.max_steps is not None and run.state["global_step"] >= run.config.max_steps:
        return "max steps"
    return None


# --- one epoch ----------------------------------------------------------------------------

def train_epoch(run: Run) -> str | None:
    """The rest of the current epoch's batches; returns why the run stopped inside it (or None)."""
    state, config = run.state, run.config
    epoch = state["epoch"]
    run.sampler.load_state_dict({"epoch": epoch, "position": state["step_in_epoch"] * run.batch_size})
    loader = torch.utils.data.DataLoader(
        run.dataset, batch_size=run.batch_size, sampler=run.dataset.keys(), collate_fn=collate,
        num_workers=config.num_workers,
        # A private generator: creating the loader must not consume torch's global
        # stream (the dropout masks), or a resumed run would diverge.
        generator=torch.Generator(),
    )
    run.model.train()
    tick = time.perf_counter()
    for batch in loader:
        batch = batch.to(run.device)
        # Waiting for the loader (sampling, tokenising, collating, or the workers
        # falling behind) and the copy to the device: the data pipeline's share.
        state["epoch_data_s"] += time.perf_counter() - tick
        mse, extra, lr = train_step(run, batch)
        tick, over_votes = after_step(run, batch, mse, extra, lr, epoch, tick)
        stopped = stop_reason(run, over_votes)
        if stopped is not None:
            return stopped
        if config.checkpoint_every_steps and state["global_step"] % config.checkpoint_every_steps == 0:
            checkpoint(run)
            tick = time.perf_counter()  # saving is not training time
    return None


def epoch_finished(run: Run) -> bool:
    return run.state["step_in_epoch"] >= run.steps_per_epoch


def due_for_validation(run: Run, stopped: str | None) -> bool:
    """Validate after every ``eval_every``-th finished epoch, the last one, and on a stop."""
    epoch = run.state["epoch"]
    last = epoch + 1 >= run.config.epochs
    return (epoch_finished(run) and ((epoch + 1) % run.config.eval_every == 0 or last)) or stopped is not None


# --- validation and the best model --------------------------------------------------------

def validate(model, sessions: Sequence, tokenizer, meta: dict, config: TrainConfig, device) -> dict[str, float]:
    """R^2 of each session on its valid split (sessions without one are left out), stitched
    or, with ``config.select == "causal"``, from the window that ends at each sample.

    A session whose valid targets do not vary (e.g. a rat resting through every valid block)
    gets -inf: it is logged as such and left out of :func:`selection_score`.
    """
    stitched = predict_split(
        model, sessions, tokenizer, split="valid",
        normalization=setup.normalization_from_meta(meta),
        batch_size=config.eval_batch_size, device=device, precision=config.precision,
        causal=config.select == "causal",
    )
    rows = score(stitched, method="poyo", split="valid")
    per_session = {s.id: mean_r2([r for r in rows if r.session == s.id]) for s in sessions}
    return {k: v for k, v in per_session.items() if not math.isnan(v)}


def selection_score(valid: dict[str, float]) -> float:
    """Mean valid R^2 over the sessions where it is finite (NaN when there is none)."""
    finite = [v for v in valid.values() if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def validate_and_keep_best(run: Run) -> dict[str, float]:
    """Score the valid split (shared among processes) and save the model if it is the best yet."""
    world, sessions = run.world, run.sessions
    # Each process scores its share of the sessions (all of them in a world of one).
    mine = validate(run.model, sessions[world.rank :: world.size], run.eval_tokenizer, run.meta, run.config,
                    run.device)
    merged = distributed.merge(mine, world)
    valid = {s.id: merged[s.id] for s in sessions if s.id in merged}
    keep_best(run, valid, run.state["epoch"])
    return valid


def keep_best(run: Run, valid: dict[str, float], epoch: int) -> None:
    """Record ``valid`` as the best so far and save the model, when its score beats the best."""
    state = run.state
    score_ = selection_score(valid)
    best = state["best_score"]
    # Until some valid R^2 is finite (e.g. no valid split), the latest model is the best.
    if best is None or (not math.isnan(score_) and score_ > best):
        state["best_score"] = None if math.isnan(score_) else score_
        state["best_epoch"] = epoch
        # JSON has no infinities: a session whose R^2 is undefined is stored as null.
        state["best_valid"] = {k: (v if math.isfinite(v) else None) for k, v in valid.items()}
        if not run.world.is_main:
            return
        from popdecode.model.io import save_model

        save_model(run.out_dir, run.model, {**run.meta, "best": {"epoch": epoch, "step": state["global_step"],
                                                                 "valid_r2": state["best_score"],
                                                                 "valid_r2_per_session": state["best_valid"]}})


# --- the log and the checkpoint -----------------------------------------------------------

def log_epoch(run: Run, valid: dict[str, float] | None) -> None:
    """Append this epoch's row (loss, rate, valid R^2, speed) to ``train_log.csv``."""
    state, config = run.state, run.config
    epoch = state["epoch"]
    row = {
        "epoch": epoch + 1 if epoch_finished(run) else epoch + state["step_in_epoch"] / run.steps_per_epoch,
        "step": state["global_step"],
        "loss": state["epoch_loss_sum"] / max(state["epoch_windows"], 1),
        "lr": lr_at(state["global_step"] - 1, run.total_steps, config.peak_lr),
        "valid_r2": "" if valid is None else selection_score(valid),
    }
    for s in run.sessions:
        row[f"valid_r2/{s.id}"] = "" if not valid or s.id not in valid else valid[s.id]
    row["windows_per_s"] = state["epoch_windows"] / max(state["epoch_train_s"], 1e-9)
    row["data_share"] = state["epoch_data_s"] / max(state["epoch_train_s"], 1e-9)
    row["elapsed_s"] = time.perf_counter() - run.clock0
    state["log"].append(row)
    if run.world.is_main:
        write_log(run.out_dir / LOG_FILE, state["log"])
    if run.writer is not None and valid and math.isfinite(row["valid_r2"]):
        run.writer.add_scalar("valid/r2", row["valid_r2"], state["global_step"])


def end_epoch(run: Run) -> None:
    """Move to the next epoch when this one is done, and save a resumable checkpoint."""
    if epoch_finished(run):
        run.state.update(epoch=run.state["epoch"] + 1, step_in_epoch=0, epoch_loss_sum=0.0, epoch_windows=0,
                         epoch_train_s=0.0, epoch_data_s=0.0)
    checkpoint(run)


def checkpoint(run: Run) -> None:
    """Rank 0 writes ``RUN/checkpoint/`` with every process's random states (all take part)."""
    rng = distributed.rng_states(run.world, run.device)
    if run.world.is_main:
        run.state["elapsed_s"] = time.perf_counter() - run.clock0
        save_checkpoint(run.out_dir, model=run.model, meta=run.meta, optimizer=run.optimizer,
                        progress=dict(run.state), rng=rng)


def write_log(path: Path, rows: list[dict]) -> None:
    """The whole CSV log, rewritten atomically (it is small: one row per epoch)."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
