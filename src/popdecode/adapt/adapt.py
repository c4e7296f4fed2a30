"""Few-shot adaptation of a trained POYO to new sessions (spec section 6), over the trainer.

Adaptation is ordinary training (:func:`popdecode.train.trainer.fit`) with three things
chosen differently:

* **What trains.** ``unit-id`` ("unit identification") trains only the new rows of the unit
  and session tables: every other parameter is frozen (no gradient at all), and the rows of
  the sessions the model already knew get a zero gradient, which LAMB's sparse-rows rule
  turns into "not touched" (weights, moments, weight decay). The rest of the network stays
  bit for bit what it was, so the old sessions decode exactly as before. ``finetune`` trains
  everything; ``unit-id+finetune`` runs the first stage and then the second from its best
  model.
* **What is labelled.** Only the first N training trials of each new session carry targets
  (:mod:`popdecode.adapt.labelled`); the model is evaluated on the session's test split.
* **Where new rows start.** ``new_rows="random"`` is the paper's recipe: each new unit (and
  session) gets a free row drawn from N(0, 0.02). ``new_rows="mixture"`` writes each new row
  as a softmax mixture of the rows the model already knows
  (:class:`~popdecode.model.vocab.RowMixture`) and trains only the mixing weights: a new
  unit starts as the average known unit and can only become a blend of known ones. With ten
  labelled trials free rows overfit and depend on their random start; mixtures were better
  and steadier (BENCHMARKS.md, "Adaptation"), so they are the default. The saved model is
  ordinary either way: the mixtures are written into the table. With
  ``mixture_start="tuning"`` the mixing weights do not start at zero but from how each new
  unit's labelled spikes follow the behaviour, against the known units' own
  (:mod:`popdecode.adapt.tuning_start`): a new unit starts as a blend of the known units
  tuned like it.
* **What else it learns from.** With ``align > 0`` the unit-id stage adds a term on windows
  of the new sessions' whole train split, labelled or not: the behaviour the model decodes
  there during movement should be distributed like the behaviour of the sessions it was
  trained on (:mod:`popdecode.adapt.alignment`). Ten trials often miss some reach
  directions; the unlabelled reaches hold them. With ``self_train`` = K the whole adaptation
  runs K more times, on all training trials, those outside the labelled ones labelled by the
  previous round's decoding (:mod:`popdecode.adapt.pseudo_labels`).
* **How long.** Budgets are optimisation *steps* per stage, turned into whole epochs over the
  labelled windows (``epochs = ceil(steps / steps_per_epoch)``): five labelled trials are one
  batch per epoch, all trials of a session ten or more, and a step costs the same either way,
  so the time is set by the steps. The new embeddings start from N(0, 0.02) and must travel
  far, so unit identification uses a larger learning rate than pretraining (LAMB moves a
  tensor by ``lr x |w|`` per step); mixing weights start at zero, where LAMB's relative steps
  would never leave, so they train with AdamW; fine-tuning uses a small one so as not to wash out what
  pretraining learned.

Model selection: the best epoch by R^2 on the new sessions' valid split, checked about
``evals`` times per stage; with ``no_valid`` the valid split is hidden and the last epoch is
kept (a user with N labelled trials may have no validation trials to spare).

:func:`train_scratch` is the comparison every few-shot claim needs: a fresh model of the same
shape trained on the same labelled trials of one session only.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from popdecode.adapt.alignment import AlignmentLoss, behaviour_prior, prior_sessions
from popdecode.adapt.labelled import UNLABELLED, LabelledSession, LabelledSpec, labelled_pieces
from popdecode.adapt.new_rows import add_rows, adapted_meta, check_new_sessions, labelled_normalization, new_session_readouts
from popdecode.adapt.pseudo_labels import pseudo_labelled
from popdecode.adapt.tuning_start import DEFAULT_BANDWIDTH, MIXTURE_STARTS, start_from_tuning
from popdecode.data.intervals import Intervals
from popdecode.errors import UserError
from popdecode.evaluate.predict import predict_split, score
from popdecode.evaluate.results import ResultRow, mean_r2
from popdecode.model.io import load_model
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.train import setup
from popdecode.train.checkpoint import CHECKPOINT_DIR
from popdecode.train.config import DEFAULT_LOSS_WEIGHTS, TrainConfig
from popdecode.train.trainer import fit, resolve_device, table_parameters

MODES = ("unit-id", "finetune", "unit-id+finetune")
NEW_ROWS = ("random", "mixture")
# Unit-id learning rate when none is given, by valid R^2 (BENCHMARKS.md, "Adaptation"): random
# rows 3e-2 (of 1e-2, 3e-2, 1e-1 in the first run), mixtures 0.1 (0.3 was worse).
DEFAULT_UNIT_ID_LR = {"random": 3e-2, "mixture": 1e-1}


@dataclass(kw_only=True)
class AdaptConfig:
    """Everything ``popdecode adapt`` can be told about how to adapt (and compare)."""

    mode: str = "unit-id"  # see MODES
    # See NEW_ROWS. Mixtures by default: at 10 labelled trials they beat free rows on all three
    # held-out sessions of BENCHMARKS.md (mean of 3 seeds) with a third of the spread; "random"
    # is the paper's recipe.
    new_rows: str = "mixture"
    # Where mixing weights start (see MIXTURE_STARTS): "mean" (zero logits: the average known
    # unit) or "tuning" (popdecode.adapt.tuning_start; needs the model's training sessions, from
    # the stores its training recorded or prior_data). mixture_bandwidth: its kernel's width.
    mixture_start: str = "mean"
    mixture_bandwidth: float = DEFAULT_BANDWIDTH
    steps: int = 600  # unit-id stage: optimisation steps
    lr: float | None = None  # unit-id stage: peak learning rate (None: DEFAULT_UNIT_ID_LR[new_rows])
    finetune_steps: int = 200  # finetune stage: optimisation steps
    finetune_lr: float = 1e-3  # finetune stage: peak learning rate
    batch_size: int = 16  # windows per step
    optimizer: str = "lamb"  # "lamb" or "adamw"
    weight_decay: float = 1e-4
    unit_dropout: bool = True
    evals: int = 10  # validations per stage (model selection)
    no_valid: bool = False  # hide the valid split: keep the last epoch
    reuse_session: bool = False  # allow sessions already in the vocabulary
    scratch_steps: int = 400  # from-scratch comparison: steps and learning rate
    scratch_lr: float = 3e-3  # best of 1e-3, 3e-3, 1e-2 on valid (BENCHMARKS.md)
    # Weight of the alignment term on unlabelled windows of the new sessions (0: off); see
    # popdecode.adapt.alignment. Applies to the unit-id stage.
    align: float = 0.0
    # Stores of the model's training sessions, for the alignment's behaviour prior and the tuning
    # start (default: the stores the model's training recorded).
    prior_data: list[str] | None = None
    # Rounds of self-training (popdecode.adapt.pseudo_labels): after an adaptation, its decoding
    # of the unlabelled training trials becomes their labels and adaptation runs again (0: off).
    self_train: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    num_workers: int = 0
    threads: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.new_rows not in NEW_ROWS:
            raise UserError(f"--new-rows must be one of {', '.join(NEW_ROWS)} (got {self.new_rows!r})")
        if self.mixture_start not in MIXTURE_STARTS:
            raise UserError(f"--mixture-start must be one of {', '.join(MIXTURE_STARTS)} (got {self.mixture_start!r})")
        if self.mixture_start != "mean" and (self.new_rows != "mixture" or self.mode == "finetune"):
            raise UserError("--mixture-start tuning starts the mixture rows of the unit-id stage; "
                            "it needs --new-rows mixture and --mode unit-id or unit-id+finetune")
        if not self.mixture_bandwidth > 0:
            raise UserError(f"--mixture-bandwidth must be positive (got {self.mixture_bandwidth})")
        if self.lr is None:
            self.lr = DEFAULT_UNIT_ID_LR[self.new_rows]
        for flag, value in (("--steps", self.steps), ("--finetune-steps", self.finetune_steps),
                            ("--scratch-steps", self.scratch_steps), ("--batch-size", self.batch_size),
                            ("--evals", self.evals)):
            if value < 1:
                raise UserError(f"{flag} must be at least 1 (got {value})")
        if self.self_train < 0:
            raise UserError(f"--self-train must be 0 (off) or a number of rounds (got {self.self_train})")
        if not self.align >= 0:
            raise UserError(f"--align must be 0 (off) or positive (got {self.align})")
        for flag, value in (("--lr", self.lr), ("--finetune-lr", self.finetune_lr), ("--scratch-lr", self.scratch_lr)):
            if not value > 0:
                raise UserError(f"{flag} must be positive (got {value})")

    @property
    def stages(self) -> list[tuple[str, int, float]]:
        """(stage name, steps, peak lr) in the order they run."""
        out = []
        if self.mode in ("unit-id", "unit-id+finetune"):
            out.append(("unit-id", self.steps, self.lr))
        if self.mode in ("finetune", "unit-id+finetune"):
            out.append(("finetune", self.finetune_steps, self.finetune_lr))
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def stage_config(cfg: AdaptConfig, *, steps: int, lr: float, windows_per_epoch: int,
                 optimizer: str | None = None) -> TrainConfig:
    """The trainer's configuration for one stage of ``steps`` steps over the labelled windows."""
    steps_per_epoch = max(1, math.ceil(windows_per_epoch / cfg.batch_size))
    epochs = max(1, math.ceil(steps / steps_per_epoch))
    return TrainConfig(
        epochs=epochs, batch_size=cfg.batch_size, lr=lr, optimizer=optimizer or cfg.optimizer,
        weight_decay=cfg.weight_decay, unit_dropout=cfg.unit_dropout,
        # Samples outside the labelled trials enter windows as input only.
        loss_weights={**DEFAULT_LOSS_WEIGHTS, UNLABELLED: 0.0},
        eval_every=max(1, epochs // cfg.evals), seed=cfg.seed, device=cfg.device,
        precision=cfg.precision, num_workers=cfg.num_workers, threads=cfg.threads,
    )


def labelled_windows(views: Sequence[LabelledSession], window_length: float) -> int:
    """Training windows per epoch over the labelled spans of ``views``."""
    return TrainWindowSampler(intervals=[v.split("train") for v in views], window_length=window_length).total_windows


def _fit_stage(model, views, tcfg: TrainConfig, out_dir: Path, *, meta: dict, trainable=None, row_masks=None,
               extra_loss=None):
    """``fit`` one stage into ``out_dir``; returns (best model, its meta, summary).

    The stage's resumable checkpoint is dropped afterwards: an adaptation is minutes long and
    restarts from the pretrained run, and the checkpoint would triple the run's size.
    """
    tick = time.perf_counter()
    summary = fit(model, views, tcfg, out_dir, meta=meta, trainable=trainable, row_masks=row_masks,
                  extra_loss=extra_loss)
    seconds = time.perf_counter() - tick
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    best, best_meta = load_model(out_dir)
    info = {"steps": summary["steps"], "epochs": summary["epochs_done"], "seconds": round(seconds, 2),
            "best_epoch": summary["best_epoch"], "best_valid_r2": summary["best_valid_r2"],
            "lr": tcfg.lr, "batch_size": tcfg.batch_size}
    return best, best_meta, info


def adapt(
    model,
    meta: dict,
    sessions: Sequence,
    pieces: dict[str, Intervals],
    cfg: AdaptConfig,
    work_dir: str | Path,
) -> tuple[object, dict, dict]:
    """Adapt ``model`` to ``sessions`` (all together) on their labelled ``pieces``.

    Each stage trains into ``work_dir/<stage>/`` (model, log, config); the last stage's best
    model is the result. Returns ``(model, meta, info)`` with ``info`` = per-stage steps,
    epochs, seconds and best valid R^2, and the total seconds.

    With ``cfg.self_train`` = K > 0 the adaptation runs K + 1 times
    (:mod:`popdecode.adapt.pseudo_labels`): round 0 on ``pieces`` into ``work_dir/round-0/``,
    then each round from the pretrained ``model`` again on all training trials of the sessions,
    the ones outside ``pieces`` labelled by the previous round's model; the last round writes
    ``work_dir/<stage>/``. ``info["rounds"]`` holds every round's info. Nothing is left to
    label when ``pieces`` already cover every training trial: then one round runs.
    """
    work_dir = Path(work_dir)
    window_length = float(model.config.window_length)
    if cfg.self_train == 0:
        return _adapt_once(model, meta, sessions, pieces, cfg, work_dir)
    everything = {s.id: labelled_pieces(s, LabelledSpec(), window_length) for s in sessions}
    if not any(everything[s.id].difference(pieces[s.id]).duration > 0 for s in sessions):
        return _adapt_once(model, meta, sessions, pieces, cfg, work_dir)  # nothing to pseudo-label

    pretrained = copy.deepcopy(model)
    labeller, labeller_meta, info = _adapt_once(model, meta, sessions, pieces, cfg, work_dir / "round-0")
    rounds = [info]
    # What the saved model says of its data: what was truly labelled, and what was not.
    record = {**_labelled_record(sessions, pieces), "self_train": cfg.self_train,
              "pseudo_labelled_trials": {s.id: len(everything[s.id]) - len(pieces[s.id]) for s in sessions}}
    device = resolve_device(cfg.device)
    for r in range(1, cfg.self_train + 1):
        labeller.to(device)
        pseudo = [pseudo_labelled(labeller, labeller_meta, s, pieces[s.id], device=device, precision=cfg.precision)
                  for s in sessions]
        # A model without a target normalisation of its own (converted from torch-brain) keeps
        # round 0's, measured on the true labels: the pseudo-labels are in its units.
        round_meta = {**meta, "normalization": labeller_meta["normalization"]}
        if "normalization_from_adaptation" in labeller_meta:
            round_meta["normalization_from_adaptation"] = labeller_meta["normalization_from_adaptation"]
        last = r == cfg.self_train
        labeller, labeller_meta, info = _adapt_once(copy.deepcopy(pretrained), round_meta, pseudo, everything, cfg,
                                                    work_dir if last else work_dir / f"round-{r}", record=record)
        rounds.append(info)
    return labeller, labeller_meta, {**info, "seconds": round(sum(i["seconds"] for i in rounds), 2), "rounds": rounds}


def _adapt_once(model, meta: dict, sessions: Sequence, pieces: dict[str, Intervals], cfg: AdaptConfig,
                work_dir: Path, *, record: dict | None = None) -> tuple[object, dict, dict]:
    """One adaptation of ``model`` on ``pieces`` (see :func:`adapt`), stages into ``work_dir``;
    ``record`` overrides entries of the saved ``meta["adaptation"]``."""
    window_length = float(model.config.window_length)
    readouts = check_new_sessions(model, sessions, reuse=cfg.reuse_session)
    # The new rows are drawn from torch's global generator: seed it here, so that an
    # adaptation depends on --seed alone and not on what ran before it in the process
    # (the quickstart pretrains in the same process).
    torch.manual_seed(cfg.seed)
    masks = add_rows(model, sessions)
    alignment = _alignment(model, meta, sessions, readouts, cfg) if cfg.align > 0 else None
    known = known_sessions(model, meta, cfg) if cfg.mixture_start == "tuning" else None
    meta = adapted_meta(meta, sessions, readouts, pieces)
    meta["adaptation"] = {
        "mode": cfg.mode,
        "new_rows": cfg.new_rows,
        "mixture_start": cfg.mixture_start,
        "sessions": [s.id for s in sessions],
        **_labelled_record(sessions, pieces),
        "align": cfg.align,
        **(record or {}),
    }
    views = [LabelledSession(s, pieces[s.id], window_length=window_length, no_valid=cfg.no_valid) for s in sessions]
    windows = labelled_windows(views, window_length)
    info: dict = {"stages": {}, "windows_per_epoch": windows}
    total = 0.0
    for name, steps, lr in cfg.stages:
        mixing = name == "unit-id" and cfg.new_rows == "mixture"
        tcfg = stage_config(cfg, steps=steps, lr=lr, windows_per_epoch=windows,
                            optimizer="adamw" if mixing else None)
        if mixing:
            trainable, row_masks = attach_mixtures(model, masks, meta, sessions, pieces, cfg, known=known), None
        elif name == "unit-id":
            trainable, row_masks = table_parameters(model), masks
        else:
            trainable, row_masks = list(model.parameters()), None
        model, final_meta, stage_info = _fit_stage(model, views, tcfg, work_dir / name, meta=meta,
                                                   trainable=trainable, row_masks=row_masks,
                                                   extra_loss=alignment if name == "unit-id" else None)
        info["stages"][name] = stage_info
        total += stage_info["seconds"]
    info["seconds"] = round(total, 2)
    return model, final_meta, info


def attach_mixtures(model, masks: dict[str, torch.Tensor], meta: dict, sessions: Sequence,
                    pieces: dict[str, Intervals], cfg: AdaptConfig, *, known: Sequence | None = None) -> list:
    """Make the rows of ``masks`` (:func:`add_rows`) mixtures of the known rows, on ``cfg.device``;
    their logits start at zero, the units' from their tuning when ``known`` (the model's
    training sessions, :func:`known_sessions`) is given. Returns the logits, what trains."""
    model.to(resolve_device(cfg.device))  # the mixing weights are made where the tables are
    trainable = [model.unit_vocab.mix_rows(masks["unit_vocab.weight"]).logits,
                 model.session_vocab.mix_rows(masks["session_vocab.weight"]).logits]
    if known is not None:
        start_from_tuning(model, meta, sessions, pieces, known, bandwidth=cfg.mixture_bandwidth)
    return trainable


def _labelled_record(sessions: Sequence, pieces: dict[str, Intervals]) -> dict:
    """The labelled trials and seconds of each session, as the saved metadata records them."""
    return {"labelled_trials": {s.id: len(pieces[s.id]) for s in sessions},
            "labelled_seconds": {s.id: round(pieces[s.id].duration, 3) for s in sessions}}


def known_sessions(model, meta: dict, cfg: AdaptConfig) -> list:
    """The model's training sessions that ``cfg.prior_data`` (or the recorded stores) hold, for
    the tuning start; a :class:`UserError` when none of them can be opened."""
    known = [s for s in prior_sessions(meta, cfg.prior_data, needed_by="--mixture-start tuning")
             if s.id in model.session_vocab]
    if not known:
        raise UserError("--mixture-start tuning: none of the model's training sessions is in "
                        f"{', '.join(cfg.prior_data or [])}; pass --prior-data with the stores the model was trained on")
    return known


def _alignment(model, meta: dict, sessions: Sequence, readouts: dict[str, list[str]],
               cfg: AdaptConfig) -> AlignmentLoss:
    """The alignment term of the unit-id stage: priors from the model's training sessions (or
    ``cfg.prior_data``) for the readouts the new sessions supervise (``readouts``, session id ->
    names, from :func:`check_new_sessions`), windows from the new sessions' whole train splits."""
    norm = setup.normalization_from_meta(meta)
    aligned = [r for r in dict.fromkeys(r for names in readouts.values() for r in names) if r in norm]
    if not aligned:
        raise UserError("--align: the model has no target normalisation for the new sessions' readouts; "
                        "adapt without --align")
    prior_from = prior_sessions(meta, cfg.prior_data)
    priors = {r: behaviour_prior(prior_from, r, norm[r], loss_weights=DEFAULT_LOSS_WEIGHTS, seed=cfg.seed)
              for r in aligned}
    tokenizer = setup.make_tokenizer(model, sessions, meta, train=True, unit_dropout=cfg.unit_dropout,
                                     loss_weights=DEFAULT_LOSS_WEIGHTS,
                                     window_length=float(model.config.window_length))
    return AlignmentLoss(sessions=sessions, tokenizer=tokenizer, priors=priors, weight=cfg.align,
                         batch_size=cfg.batch_size, seed=cfg.seed)


def train_scratch(reference_model, session, piece: Intervals, cfg: AdaptConfig, out_dir: str | Path):
    """A fresh POYO shaped like ``reference_model``, trained only on ``piece`` of ``session``.

    Same window length, unit dropout and loss as adaptation; its own step budget and learning
    rate (``scratch_steps``, ``scratch_lr``): a network learning from nothing needs more steps
    than embeddings learning to fit a trained one. Returns ``(model, meta, info)``.
    """
    from popdecode.model.poyo import POYO

    out_dir = Path(out_dir)
    readouts = new_session_readouts(reference_model, session)
    torch.manual_seed(cfg.seed)
    model = POYO(config=reference_model.config, readouts={r: reference_model.readout_dims[r] for r in readouts})
    setup.register_sessions(model, [session])
    meta = {
        "normalization": setup.normalization_to_meta(labelled_normalization([session], {session.id: piece}, readouts)),
        "session_readouts": {session.id: readouts},
        "scratch": {"session": session.id, "labelled_trials": len(piece)},
    }
    window_length = float(model.config.window_length)
    view = LabelledSession(session, piece, window_length=window_length, no_valid=cfg.no_valid)
    tcfg = stage_config(cfg, steps=cfg.scratch_steps, lr=cfg.scratch_lr,
                        windows_per_epoch=labelled_windows([view], window_length))
    return _fit_stage(model, [view], tcfg, out_dir, meta=meta)


def evaluate_test(model, meta: dict, sessions: Sequence, *, method: str, cfg: AdaptConfig,
                  split: str = "test") -> list[ResultRow]:
    """R^2 of ``model`` on each session's ``split`` (stitched windows, eval mask), as result rows."""
    device = resolve_device(cfg.device)
    model = model.to(device)
    tokenizer = setup.make_tokenizer(model, sessions, meta, train=False, window_length=float(model.config.window_length))
    stitched = predict_split(model, sessions, tokenizer, split=split,
                             normalization=setup.normalization_from_meta(meta),
                             device=device, precision=cfg.precision)
    rows = score(stitched, method=method, split=split)
    missing = [s.id for s in sessions if not any(r.session == s.id for r in rows)]
    for sid in missing:  # no test split: say so in the table rather than dropping the session
        rows.append(ResultRow(method=method, split=split, session=sid, readout="", r2=float("nan"), n_timestamps=0))
    return rows


def mean_session_r2(rows: list[ResultRow], session: str) -> float:
    """One session's R^2, averaged over its readouts (NaN when it has none)."""
    return mean_r2([r for r in rows if r.session == session])
