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

import json
import math
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from popdecode.errors import UserError
from popdecode.tokenize.dataset import WindowDataset
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.train import distributed, loop, setup
from popdecode.train.checkpoint import has_checkpoint, load_checkpoint
from popdecode.train.config import TrainConfig
from popdecode.train.lamb import build_optimizer
from popdecode.train.loop import LOG_FILE, selection_score, validate, weighted_mse  # noqa: F401 (part of this module's API)
from popdecode.utils.atomic import write_json
from popdecode.utils.progress import progress

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


def table_parameters(model) -> list[torch.nn.Parameter]:
    """The embedding tables whose rows follow the sparse-rows rule (unit and session)."""
    return [model.unit_vocab.weight, model.session_vocab.weight]


def parameter_groups(model, row_masks: dict[str, torch.Tensor], extra: Sequence[torch.Tensor] = (), *,
                     embedding_lr_scale: float = 1.0) -> list[dict]:
    """Two optimiser groups: sparse-row tables (and row-masked weights), and the rest, which
    also holds ``extra`` trainable tensors that live outside the model (e.g. the mixing
    weights of :class:`popdecode.model.vocab.RowMixture`). Each group's ``lr_scale`` multiplies
    the scheduled rate (``TrainConfig.embedding_lr_scale`` for the first, 1 for the rest)."""
    named = dict(model.named_parameters())
    sparse_ids = {id(p) for p in table_parameters(model)} | {id(named[n]) for n in row_masks}
    sparse, dense = [], []
    for p in model.parameters():
        if p.requires_grad:
            (sparse if id(p) in sparse_ids else dense).append(p)
    return [{"params": sparse, "sparse_rows": True, "lr_scale": embedding_lr_scale},
            {"params": dense + list(extra), "sparse_rows": False, "lr_scale": 1.0}]


def _tensorboard_class(enabled: bool):
    """TensorBoard's SummaryWriter, checked before anything is written (None when off)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'popdecode[tensorboard]', or drop the flag") from None
    return SummaryWriter


# --- setting a run up --------------------------------------------------------------------

def trainable_tensors(model, trainable, *, resume: bool, world) -> list[torch.Tensor]:
    """Freeze what does not train; return the trainable tensors that live outside the model."""
    if trainable is None:
        return []
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
    return external


def mask_tensors(model, row_masks, device) -> dict[str, torch.Tensor]:
    """``row_masks`` as boolean tensors on ``device``, checked against the model's parameters."""
    named = dict(model.named_parameters())
    masks = {}
    for name, rows in (row_masks or {}).items():
        if name not in named:
            raise ValueError(f"row mask for unknown parameter {name!r}")
        masks[name] = torch.as_tensor(np.asarray(rows, dtype=bool), device=device)
    return masks


def training_data(model, sessions: Sequence, meta: dict, config: TrainConfig, world, window_length: float):
    """The train sampler (this process's shard), the dataset of its windows, and the valid tokenizer."""
    train_tok = setup.make_tokenizer(model, sessions, meta, train=True, unit_dropout=config.unit_dropout,
                                     loss_weights=config.loss_weights, window_length=window_length,
                                     end_queries=config.end_queries, end_span=config.end_span,
                                     end_only=config.end_only)
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
    return sampler, dataset, eval_tok


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

    The set-up comes first and may refuse the run before anything is written; the epochs
    are :mod:`popdecode.train.loop`'s.
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

    # -- what trains, and how --------------------------------------------------------------
    model.to(device)
    if config.compile:
        model.compile_for_training()  # compiles on the first step (and once per new batch size)
    external = trainable_tensors(model, trainable, resume=resume, world=world)
    B = distributed.local_batch_size(config.batch_size, world)  # this process's share of the batch
    masks = mask_tensors(model, row_masks, device)
    groups = parameter_groups(model, masks, external, embedding_lr_scale=config.embedding_lr_scale)
    optimizer = build_optimizer(groups, name=config.optimizer, lr=config.peak_lr, weight_decay=config.weight_decay)
    sampler, dataset, eval_tok = training_data(model, sessions, meta, config, world, window_length)
    steps_per_epoch = math.ceil(len(sampler) / B)
    total_steps = config.epochs * steps_per_epoch

    # -- where we stand (everything above may refuse the run; nothing is written before) ----
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / CONFIG_FILE, config.to_dict())
    state = loop.new_state()
    torch.manual_seed(config.seed + world.rank)  # dropout stream (a checkpoint's replaces it)
    if resume:
        state.update(load_checkpoint(out_dir, model=model, optimizer=optimizer, rank=world.rank))
    net = distributed.wrap(model, world, device)  # what the steps call
    writer = None if summary_writer is None or not world.is_main else summary_writer(str(out_dir / "tensorboard"))
    run = loop.Run(
        model=model, net=net, optimizer=optimizer, sessions=sessions, config=config, meta=meta, out_dir=out_dir,
        world=world, device=device, masks=masks, named=dict(model.named_parameters()), sampler=sampler,
        dataset=dataset, eval_tokenizer=eval_tok, batch_size=B, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, extra_loss=extra_loss, state=state, writer=writer,
        bar=progress(total=total_steps, initial=state["global_step"], desc="train", unit="step",
                     **({} if world.is_main else {"disable": True})),
        clock0=time.perf_counter() - state["elapsed_s"],  # total training time, over resumes
        started=time.perf_counter(),  # the time budget counts this invocation only
        budget_s=None if config.time_budget_min is None else 60.0 * config.time_budget_min,
    )
    stopped = None
    try:
        while state["epoch"] < config.epochs and stopped is None:
            stopped = loop.train_epoch(run)
            valid = loop.validate_and_keep_best(run) if loop.due_for_validation(run, stopped) else None
            loop.log_epoch(run, valid)
            loop.end_epoch(run)
        distributed.finish(world, created_group)
        created_group = False
    finally:
        run.bar.close()
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
        "elapsed_s": time.perf_counter() - run.clock0,
        "stopped": stopped,
        "log": state["log"],
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
    normalization = setup.compute_normalization(sessions, list(dims))
    if config.unit_init == "tuning":
        from popdecode.train.unit_init import init_from_tuning

        init_from_tuning(model, sessions, normalization, seed=config.seed)
    meta = {
        "normalization": setup.normalization_to_meta(normalization),
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
            # Runs saved before --sampling and --readout-balance existed drew by duration and
            # weighed every readout once per step.
            config = TrainConfig.from_dict({"sampling": "duration", "readout_balance": "readouts",
                                            **json.loads(saved.read_text()), **runtime})
    if not config.data:
        raise UserError("no data given; pass --data DIR (a store made by popdecode prepare or simulate)")
    sessions = setup.select_sessions(open_sessions(config.data), config.sessions, config.exclude_sessions)
    model, meta = build_model(config, sessions)
    return fit(model, sessions, config, out_dir, meta=meta, resume=resume)
