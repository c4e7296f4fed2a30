"""Training a POYO model, start to finish, in one file.

The loop, read top-down:

1. **Model and data.** :func:`train_from_scratch` opens the stores, keeps the selected
   sessions, builds a model of the chosen preset with one readout per target series, gives
   every unit and session a row of the embedding tables, and measures target normalisation
   on the training split. Then it hands over to :func:`fit`, which is what adaptation
   reuses with an existing model.
2. **Windows.** Every epoch the train intervals of all sessions are tiled with 1 s windows
   from a random offset and shuffled (:class:`~popdecode.tokenize.sampler.TrainWindowSampler`);
   each window becomes tokens (with unit dropout) and windows are packed into batches.
3. **Step.** Forward (optionally under bf16 autocast), loss = for every readout in the
   batch the weighted MSE ``sum(w * mse) / sum(w)`` (``mse`` averaged over the readout's
   dimensions, ``w`` the movement-phase weight of each timestamp), summed over readouts;
   backward; LAMB step at the scheduled learning rate (flat, then cosine to lr / 10^4).
4. **Validation.** Every ``eval_every`` epochs: R^2 per session on the valid split with
   overlapping windows and stitching; the model with the best mean is saved as the run's
   ``model.safetensors`` / ``model.json``.
5. **Bookkeeping.** A resumable checkpoint (``RUN/checkpoint/``) after every epoch (and
   every ``checkpoint_every_steps``), a CSV log (``RUN/train_log.csv``: loss, valid R^2,
   windows per second, and ``data_share``, the part of the training time spent waiting for
   batches), a progress bar, optional TensorBoard. A time budget stops the run cleanly
   after the step in flight.

Under ``torchrun`` the same loop runs in every process, data-parallel, and makes the run one
process would make (:mod:`popdecode.train.distributed` says how); the processes share the
validation, and rank 0 alone writes.

Adaptation is ``fit`` with ``trainable=[...]`` (everything else gets no gradient and stays
bit-for-bit frozen) and ``row_masks={"unit_vocab.weight": rows_that_may_change, ...}``:
the other rows of those tables get a zero gradient and the optimiser's sparse-rows rule
leaves them untouched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from popdecode.errors import UserError
from popdecode.evaluate.predict import autocast, predict_split, score
from popdecode.evaluate.results import mean_r2
from popdecode.tokenize.batch import Batch
from popdecode.tokenize.collate import collate
from popdecode.tokenize.dataset import WindowDataset
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.train import distributed, setup
from popdecode.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from popdecode.train.config import TrainConfig
from popdecode.train.lamb import build_optimizer
from popdecode.train.schedule import lr_at
from popdecode.utils.atomic import atomic_path, write_json
from popdecode.utils.progress import progress

LOG_FILE = "train_log.csv"
# TrainConfig fields that change how a run executes, not what it computes: a resumed run
# takes these from the new command line and everything else from the saved configuration.
RUNTIME_FIELDS = ("device", "num_workers", "threads", "time_budget_min", "max_steps", "tensorboard",
                  "checkpoint_every_steps", "compile")
CONFIG_FILE = "train_config.json"


# --- small pieces ---------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def weighted_mse(predictions: dict[str, torch.Tensor], batch: Batch,
                 totals: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Sum over readouts of sum(w * mse) / sum(w); readouts with no weight are skipped.

    ``totals``: each readout's sum(w) over a larger batch that this one is a shard of
    (several processes, :func:`popdecode.train.distributed.weight_totals`); default: this
    batch's own.
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
        total = term if total is None else total + term
    if total is None:
        # No supervised sample in the batch: a zero loss that still reaches every parameter
        # used, so backward() works and the step changes nothing but the moments' decay.
        total = sum(p.sum() * 0.0 for p in predictions.values())
    return total


def table_parameters(model) -> list[torch.nn.Parameter]:
    """The embedding tables whose rows follow the sparse-rows rule (unit and session)."""
    return [model.unit_vocab.weight, model.session_vocab.weight]


def parameter_groups(model, row_masks: dict[str, torch.Tensor], extra: Sequence[torch.Tensor] = ()) -> list[dict]:
    """Two optimiser groups: sparse-row tables (and row-masked weights), and the rest, which
    also holds ``extra`` trainable tensors that live outside the model (e.g. the mixing
    weights of :class:`popdecode.model.vocab.RowMixture`)."""
    named = dict(model.named_parameters())
    sparse_ids = {id(p) for p in table_parameters(model)} | {id(named[n]) for n in row_masks}
    sparse, dense = [], []
    for p in model.parameters():
        if p.requires_grad:
            (sparse if id(p) in sparse_ids else dense).append(p)
    return [{"params": sparse, "sparse_rows": True}, {"params": dense + list(extra), "sparse_rows": False}]


def _write_log(path: Path, rows: list[dict]) -> None:
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


def _tensorboard_class(enabled: bool):
    """TensorBoard's SummaryWriter, checked before anything is written (None when off)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'popdecode[tensorboard]', or drop the flag") from None
    return SummaryWriter


# --- validation ---------------------------------------------------------------------------

def validate(model, sessions: Sequence, tokenizer, meta: dict, config: TrainConfig, device) -> dict[str, float]:
    """R^2 of each session on its valid split (sessions without one are left out).

    A session whose valid targets do not vary (e.g. a rat resting through every valid block)
    gets -inf: it is logged as such and left out of :func:`selection_score`.
    """
    stitched = predict_split(
        model, sessions, tokenizer, split="valid",
        normalization=setup.normalization_from_meta(meta),
        batch_size=config.eval_batch_size, device=device, precision=config.precision,
    )
    rows = score(stitched, method="poyo", split="valid")
    per_session = {s.id: mean_r2([r for r in rows if r.session == s.id]) for s in sessions}
    return {k: v for k, v in per_session.items() if not math.isnan(v)}


def selection_score(valid: dict[str, float]) -> float:
    """Mean valid R^2 over the sessions where it is finite (NaN when there is none)."""
    finite = [v for v in valid.values() if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# --- the loop -----------------------------------------------------------------------------

def fit(
    model: torch.nn.Module,
    sessions: Sequence,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    meta: dict,
    trainable: Iterable[torch.nn.Parameter] | None = None,
    row_masks: dict[str, torch.Tensor | np.ndarray] | None = None,
    extra_loss=None,
    resume: bool = False,
) -> dict:
    """Train ``model`` on ``sessions``; keep the best model (by valid R^2) in ``out_dir``.

    Args:
        model: a POYO whose vocabularies already hold every unit and session of ``sessions``.
        sessions: in-memory or stored sessions with train (and valid) splits.
        config: the run's :class:`TrainConfig`.
        out_dir: the run directory (model, checkpoint, log).
        meta: saved with the model: at least ``normalization`` and ``session_readouts``
            (see :mod:`popdecode.train.setup`); ``best`` is added.
        trainable: the parameters to train (default: all). Others are frozen bit for bit.
            Tensors that are not parameters of ``model`` (mixing weights of new rows) train
            too; they are not part of the checkpoint, so such a run cannot be resumed.
        row_masks: parameter name -> boolean [rows] of the rows allowed to change; the
            gradient of every other row is zeroed, and the sparse-rows rule of the
            optimiser leaves those rows untouched.
        extra_loss: ``extra_loss(model, device) -> scalar tensor`` added to every step's loss
            (adaptation's alignment term, :mod:`popdecode.adapt.alignment`); the logged loss
            includes it.
        resume: continue from ``out_dir/checkpoint`` exactly where it stopped.

    Returns a summary dict: best_valid_r2, best_epoch, valid_r2 (per session, best epoch),
    epochs_done, steps, elapsed_s, stopped (None, "time budget" or "max steps"), log.
    """
    out_dir = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    world = distributed.from_env()  # several processes under torchrun, else a world of one
    device, created_group = distributed.start(world, device)  # under torchrun on CUDA: GPU LOCAL_RANK
    if resume and not has_checkpoint(out_dir):
        raise UserError(f"nothing to resume in {out_dir}: no checkpoint/state.json there; drop --resume to start a new run")
    if not resume and has_checkpoint(out_dir):
        raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out")
    summary_writer = _tensorboard_class(config.tensorboard)
    meta = dict(meta)
    meta["train_config"] = config.to_dict()
    meta["sessions"] = [s.id for s in sessions]
    window_length = float(getattr(getattr(model, "config", None), "window_length", 1.0))

    # -- what trains ------------------------------------------------------------------------
    model.to(device)
    if config.compile:
        model.compile_for_training()  # compiles on the first step (and once per new batch size)
    named = dict(model.named_parameters())
    external: list[torch.Tensor] = []
    if trainable is not None:
        keep = {id(p) for p in trainable}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        inside = {id(p) for p in model.parameters()}
        external = [p for p in trainable if id(p) not in inside]
        if external and resume:
            raise UserError("this run trains weights outside the model (mixtures of rows) and cannot be resumed")
        if external and world.distributed:
            raise UserError("this run trains weights outside the model (mixtures of rows); "
                            "run it as one process, not under torchrun")
    B = distributed.local_batch_size(config.batch_size, world)  # this process's share of the batch
    masks = {}
    for name, rows in (row_masks or {}).items():
        if name not in named:
            raise ValueError(f"row mask for unknown parameter {name!r}")
        masks[name] = torch.as_tensor(np.asarray(rows, dtype=bool), device=device)
    optimizer = build_optimizer(
        parameter_groups(model, masks, external), name=config.optimizer, lr=config.peak_lr,
        weight_decay=config.weight_decay,
    )

    # -- data ----------------------------------------------------------------------------
    train_tok = setup.make_tokenizer(model, sessions, meta, train=True, unit_dropout=config.unit_dropout,
                                     loss_weights=config.loss_weights, window_length=window_length)
    eval_tok = setup.make_tokenizer(model, sessions, meta, train=False, window_length=window_length)
    sampler = TrainWindowSampler(intervals=[s.split("train") for s in sessions], window_length=window_length,
                                 seed=config.seed, rank=world.rank, world_size=world.size, pad=world.distributed,
                                 sampling=config.sampling)
    if sampler.total_windows == 0:
        raise UserError(
            f"no training windows: no train interval of the selected sessions lasts {window_length:g} s; "
            "check the splits (popdecode inspect)"
        )
    dataset = WindowDataset(sessions, train_tok, windows=sampler, seed=config.seed, train=True)
    steps_per_epoch = math.ceil(len(sampler) / B)
    total_steps = config.epochs * steps_per_epoch

    # -- where we stand (everything above may refuse the run; nothing is written before) ----
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / CONFIG_FILE, config.to_dict())
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": None, "best_epoch": None,
             "best_valid": {}, "elapsed_s": 0.0, "log": [],
             "epoch_loss_sum": 0.0, "epoch_windows": 0, "epoch_train_s": 0.0, "epoch_data_s": 0.0}
    torch.manual_seed(config.seed + world.rank)  # dropout stream (a checkpoint's replaces it)
    if resume:
        state.update(load_checkpoint(out_dir, model=model, optimizer=optimizer, rank=world.rank))
    log_rows: list[dict] = state["log"]
    net = distributed.wrap(model, world, device)  # what the steps call

    writer = None if summary_writer is None or not world.is_main else summary_writer(str(out_dir / "tensorboard"))
    budget_s = None if config.time_budget_min is None else 60.0 * config.time_budget_min
    clock0 = time.perf_counter() - state["elapsed_s"]  # total training time, over resumes
    started = time.perf_counter()  # the time budget counts this invocation only
    bar = progress(total=total_steps, initial=state["global_step"], desc="train", unit="step",
                   **({} if world.is_main else {"disable": True}))
    stopped = None

    def snapshot() -> dict:
        state["elapsed_s"] = time.perf_counter() - clock0
        return {k: v for k, v in state.items()}

    def checkpoint() -> None:
        rng = distributed.rng_states(world, device)  # every process takes part
        if world.is_main:
            save_checkpoint(out_dir, model=model, meta=meta, optimizer=optimizer, progress=snapshot(), rng=rng)

    def save_best(valid: dict[str, float], epoch: int) -> None:
        score_ = selection_score(valid)
        best = state["best_score"]
        # Until some valid R^2 is finite (e.g. no valid split), the latest model is the best.
        if best is None or (not math.isnan(score_) and score_ > best):
            state["best_score"] = None if math.isnan(score_) else score_
            state["best_epoch"] = epoch
            # JSON has no infinities: a session whose R^2 is undefined is stored as null.
            state["best_valid"] = {k: (v if math.isfinite(v) else None) for k, v in valid.items()}
            if not world.is_main:
                return
            from popdecode.model.io import save_model

            save_model(out_dir, model, {**meta, "best": {"epoch": epoch, "step": state["global_step"],
                                                         "valid_r2": state["best_score"],
                                                         "valid_r2_per_session": state["best_valid"]}})

    try:
        while state["epoch"] < config.epochs and stopped is None:
            epoch = state["epoch"]
            sampler.load_state_dict({"epoch": epoch, "position": state["step_in_epoch"] * B})
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=B, sampler=dataset.keys(), collate_fn=collate,
                num_workers=config.num_workers,
                # A private generator: creating the loader must not consume torch's global
                # stream (the dropout masks), or a resumed run would diverge.
                generator=torch.Generator(),
            )
            model.train()
            tick = time.perf_counter()
            for batch in loader:
                batch = batch.to(device)
                # Waiting for the loader (sampling, tokenising, collating, or the workers
                # falling behind) and the copy to the device: the data pipeline's share.
                state["epoch_data_s"] += time.perf_counter() - tick
                lr = lr_at(state["global_step"], total_steps, config.peak_lr)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                totals = distributed.weight_totals(batch, model.readout_names, world, device)
                with autocast(device, config.precision):
                    preds = net(batch)
                mse = weighted_mse(preds, batch, totals)
                # Gradients are averaged over the processes: each one's share counts N times.
                loss = mse * world.size
                extra = None
                if extra_loss is not None:
                    with autocast(device, config.precision):
                        extra = extra_loss(model, device)
                    loss = loss + extra
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for name, rows in masks.items():
                    grad = named[name].grad
                    if grad is not None:
                        grad[~rows] = 0
                optimizer.step()

                now = time.perf_counter()
                over_budget = budget_s is not None and now - started >= budget_s
                # One all-reduce: the whole step's loss, and whether any process ran out of time.
                mse_value, over_votes = distributed.all_sum([float(mse.detach()), float(over_budget)], world, device)
                loss_value = mse_value + (0.0 if extra is None else float(extra.detach()))
                state["global_step"] += 1
                state["step_in_epoch"] += 1
                state["epoch_loss_sum"] += loss_value * batch.size * world.size
                state["epoch_windows"] += batch.size * world.size
                state["epoch_train_s"] += now - tick
                tick = now
                train_s = state["epoch_train_s"]
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}",
                                r2="-" if state["best_score"] is None else f"{state['best_score']:.3f}",
                                win_s=f"{state['epoch_windows'] / max(train_s, 1e-9):.0f}")
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, state["global_step"])
                    writer.add_scalar("train/lr", lr, state["global_step"])
                if over_votes > 0:
                    stopped = "time budget"
                elif config.max_steps is not None and state["global_step"] >= config.max_steps:
                    stopped = "max steps"
                if stopped is not None:
                    break
                if config.checkpoint_every_steps and state["global_step"] % config.checkpoint_every_steps == 0:
                    checkpoint()
                    tick = time.perf_counter()  # saving is not training time

            finished = state["step_in_epoch"] >= steps_per_epoch
            last = epoch + 1 >= config.epochs
            valid = None
            if (finished and ((epoch + 1) % config.eval_every == 0 or last)) or stopped is not None:
                # Each process scores its share of the sessions (all of them in a world of one).
                mine = validate(model, sessions[world.rank :: world.size], eval_tok, meta, config, device)
                merged = distributed.merge(mine, world)
                valid = {s.id: merged[s.id] for s in sessions if s.id in merged}
                save_best(valid, epoch)
            row = {
                "epoch": epoch + 1 if finished else epoch + state["step_in_epoch"] / steps_per_epoch,
                "step": state["global_step"],
                "loss": state["epoch_loss_sum"] / max(state["epoch_windows"], 1),
                "lr": lr_at(state["global_step"] - 1, total_steps, config.peak_lr),
                "valid_r2": "" if valid is None else selection_score(valid),
            }
            for s in sessions:
                row[f"valid_r2/{s.id}"] = "" if not valid or s.id not in valid else valid[s.id]
            row["windows_per_s"] = state["epoch_windows"] / max(state["epoch_train_s"], 1e-9)
            row["data_share"] = state["epoch_data_s"] / max(state["epoch_train_s"], 1e-9)
            row["elapsed_s"] = time.perf_counter() - clock0
            log_rows.append(row)
            if world.is_main:
                _write_log(out_dir / LOG_FILE, log_rows)
            if writer is not None and valid and math.isfinite(row["valid_r2"]):
                writer.add_scalar("valid/r2", row["valid_r2"], state["global_step"])
            if finished:
                state.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0, epoch_windows=0,
                             epoch_train_s=0.0, epoch_data_s=0.0)
            checkpoint()
        distributed.finish(world, created_group)
        created_group = False
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if config.compile:
            model.train_eagerly()  # the caller gets a plain model back
        if created_group:  # leaving on an error: no barrier, the other processes may be gone
            torch.distributed.destroy_process_group()

    return {
        "best_valid_r2": state["best_score"],
        "best_epoch": state["best_epoch"],
        "valid_r2": state["best_valid"],
        "epochs_done": state["epoch"],
        "steps": state["global_step"],
        "elapsed_s": time.perf_counter() - clock0,
        "stopped": stopped,
        "log": log_rows,
    }


def build_model(config: TrainConfig, sessions: Sequence):
    """A fresh POYO of ``config.preset`` with a readout per target and rows for every session.

    Returns ``(model, meta)``: ``meta`` holds normalisation and each session's readouts.
    """
    from popdecode.model import PRESETS, POYO

    if config.preset not in PRESETS:
        raise UserError(f"unknown preset '{config.preset}'; choose one of {', '.join(PRESETS)}")
    model_cfg = PRESETS[config.preset]
    if config.model_overrides:
        import dataclasses

        model_cfg = dataclasses.replace(model_cfg, **config.model_overrides)
    dims = setup.readout_dims(sessions)
    torch.manual_seed(config.seed)  # initial weights
    model = POYO(config=model_cfg, readouts=dims)
    setup.register_sessions(model, sessions)
    meta = {
        "normalization": setup.normalization_to_meta(setup.compute_normalization(sessions, list(dims))),
        "session_readouts": setup.session_readouts(sessions, list(model.readout_names)),
    }
    return model, meta


def train_from_scratch(config: TrainConfig, out_dir: str | Path, *, resume: bool = False) -> dict:
    """Open ``config.data``, select sessions, build a model and :func:`fit` it (see above)."""
    from popdecode.data.store import open_sessions

    if resume:
        saved = Path(out_dir) / CONFIG_FILE
        if saved.exists():
            # What shaped the run comes from the run itself; only how to run it comes from
            # this invocation.
            runtime = {k: getattr(config, k) for k in RUNTIME_FIELDS}
            # Runs saved before --sampling existed drew by duration.
            config = TrainConfig.from_dict({"sampling": "duration", **json.loads(saved.read_text()), **runtime})
    if not config.data:
        raise UserError("no data given; pass --data DIR (a store made by popdecode prepare or simulate)")
    sessions = setup.select_sessions(open_sessions(config.data), config.sessions, config.exclude_sessions)
    model, meta = build_model(config, sessions)
    return fit(model, sessions, config, out_dir, meta=meta, resume=resume)
