"""Adapt a trained model to new sessions, whose neurons it has never seen, from a few trials.

    popdecode adapt RUN --data NEWDIR --mode unit-id|finetune|unit-id+finetune --out NEWRUN
                    [--labelled-trials N | FRACTION | SECONDSs | all | 5,10,20,50,all] [--sessions GLOB ...]

The model gets new embedding rows for every unit and for each new session and keeps all of
its existing rows. By default each new row is a softmax mixture of the rows the model already
knows and only the mixing weights train (--new-rows mixture: better and steadier with few
labelled trials); --new-rows random gives free rows drawn from N(0, 0.02), the paper's
recipe. --mixture-start tuning starts each new unit as a blend of the known units whose spikes
follow the behaviour as its own do in the labelled trials, instead of as their average.
Modes (spec section 6):
  unit-id            train only the new rows; every other weight stays bit for bit the same
  finetune           train everything
  unit-id+finetune   unit-id for --steps steps, then everything for --finetune-steps steps
Only the first N "training trials" of each new session are labelled: its trials that lie in
a train interval at least one window (1 s) long, in time order (short trials get a full 1 s
window around them; samples outside the labelled trials are input only, never targets).
A value with an "s" (60s) labels the first that many seconds of the train split instead: the
measure for sessions without trials (e.g. a rat on a track), where trial counts are refused.
--align W adds an unsupervised term to unit identification: on the new session's unlabelled
train windows, the behaviour decoded during movement is pulled toward the distribution of the
behaviour in the model's training sessions (for a task shared with pretraining; the prior
comes from the stores the model was trained on, or --prior-data).
--self-train K adapts K more times: each round decodes the new session's unlabelled training
trials with the previous round's model and adapts again, from the pretrained model, on all
training trials with those decodings as their labels (valid and test are never labelled).
Budgets are optimisation steps per stage, rounded up to whole epochs over the labelled
windows. Model selection uses the new sessions' valid split (--no-valid: keep the last
epoch); the score is always the test split. With several --labelled-trials values each one is run from
the pretrained model, next to a model trained from scratch on the same trials
(--no-scratch to skip; --scratch to add it to a single value).

NEWRUN is a normal run directory (`popdecode evaluate NEWRUN --data NEWDIR` works) holding
the model adapted with the last --labelled-trials value, plus:
  adapt_results.csv/.json     per-session test R^2 of every model (popdecode.evaluate.results)
  learning_curve.csv/.json    mode, requested, labelled_trials, labelled_seconds, session,
                              r2_adapt, r2_scratch, seconds_adapt, seconds_scratch
  learning_curve.png          test R^2 against labelled trials
  adapt_config.json           the settings, the labelled trials and the timings
  adapt/<N>/<stage>/, scratch/<N>/<session>/   every model trained, with its train_log.csv
  adapt/<N>/round-<k>/<stage>/                 with --self-train: the rounds before the last
NEWRUN appears only when everything has finished.

examples:
  popdecode adapt runs/pre --data heldout --mode unit-id --labelled-trials 10 --out runs/pre-10
  popdecode adapt runs/pre --data heldout --mode unit-id --labelled-trials 5,10,20,50,all --out runs/curve
  popdecode adapt tb_run --data mine --sessions 'mihi*' --mode unit-id+finetune --out runs/mihi
  popdecode adapt runs/pre --data rats --sessions rat_w_maze --labelled-trials 30s,60s,120s,all --out runs/rat
  popdecode adapt runs/pre --data heldout --labelled-trials 10 --align 1 --self-train 1 --out runs/pre-10-st
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

from popdecode.adapt.adapt import DEFAULT_UNIT_ID_LR, MODES, NEW_ROWS, AdaptConfig
from popdecode.adapt.tuning_start import MIXTURE_STARTS

RESULTS_CSV = "adapt_results.csv"
CONFIG_JSON = "adapt_config.json"
# What makes NEWRUN a normal run: copied from the directory of the last adapted model.
RUN_FILES = ("model.safetensors", "model.json", "train_log.csv", "train_config.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AdaptConfig()
    p.add_argument("run", metavar="RUN", help="trained run directory (popdecode train, or convert-torch-brain)")
    p.add_argument("--data", nargs="+", required=True, metavar="NEWDIR", help="store(s) holding the new sessions")
    p.add_argument("--out", required=True, metavar="NEWRUN", help="run directory to write")
    p.add_argument("--mode", choices=MODES, default=d.mode, help=f"what trains (default {d.mode})")
    p.add_argument("--labelled-trials", default="all", metavar="N[,N...]",
                   help="labelled training trials per session: a count (10), a fraction (0.25), seconds of "
                        "the train split (60s), 'all', or a comma list for a learning curve (default all)")
    p.add_argument("--sessions", nargs="+", default=[], metavar="GLOB",
                   help="adapt to these sessions of NEWDIR (default: every session the model does not know)")
    p.add_argument("--reuse-session", action="store_true",
                   help="accept sessions already in the model's vocabulary and train their rows again")
    p.add_argument("--steps", type=int, default=d.steps, help=f"unit-id stage: optimisation steps (default {d.steps})")
    p.add_argument("--new-rows", choices=NEW_ROWS, default=d.new_rows,
                   help="new rows: free vectors from N(0, 0.02) (random, the paper's) or mixtures of the known "
                        f"rows (mixture, trained with AdamW) (default {d.new_rows})")
    p.add_argument("--mixture-start", choices=MIXTURE_STARTS, default=d.mixture_start,
                   help="where mixing weights start: mean = every new unit is the average known unit; tuning = "
                        "a blend of the known units whose spikes follow the behaviour as the new unit's do in its "
                        "labelled trials (reads the model's training sessions, see --prior-data); it helped "
                        "30-step adaptations on the simulator, not 150-step ones, and was worse on a real monkey "
                        "(BENCHMARKS.md, 'Where new units start in unit identification') "
                        f"(default {d.mixture_start})")
    p.add_argument("--mixture-bandwidth", type=float, default=d.mixture_bandwidth, metavar="B",
                   help="with --mixture-start tuning: width of the tuning kernel, in known units' standard "
                        f"deviations (smaller: fewer known units per new one) (default {d.mixture_bandwidth:g})")
    p.add_argument("--lr", type=float, default=None,
                   help="unit-id stage: peak learning rate (default "
                        + ", ".join(f"{v:g} for {k} rows" for k, v in DEFAULT_UNIT_ID_LR.items()) + ")")
    p.add_argument("--align", type=float, default=d.align, metavar="W",
                   help="unit-id stage: add W x the distance between the behaviour decoded on the new sessions' "
                        "unlabelled train windows during movement and the behaviour of the model's training "
                        f"sessions (sliced Wasserstein; for tasks shared with pretraining) (default {d.align:g}: off)")
    p.add_argument("--prior-data", nargs="+", default=None, metavar="STORE",
                   help="with --align or --mixture-start tuning: stores holding the model's training sessions "
                        "(the behaviour prior, the known units' tuning) (default: the stores the model was "
                        "trained from, as its metadata records them)")
    p.add_argument("--self-train", type=int, default=d.self_train, metavar="K",
                   help="rounds of self-training: label the unlabelled training trials with the adapted model's "
                        "decoding and adapt again from the pretrained model, K times (each round costs one "
                        f"adaptation; helps at few labelled trials) (default {d.self_train}: off)")
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps,
                   help=f"finetune stage: optimisation steps (default {d.finetune_steps})")
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr,
                   help=f"finetune stage: peak learning rate (default {d.finetune_lr:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"windows per step (default {d.batch_size})")
    p.add_argument("--optimizer", choices=("lamb", "adamw"), default=d.optimizer, help="optimiser (default lamb)")
    p.add_argument("--evals", type=int, default=d.evals, help=f"validations per stage, for model selection (default {d.evals})")
    p.add_argument("--no-valid", action="store_true", help="do not select on the valid split: keep the last epoch")
    p.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=None,
                   help="also train a model from scratch on the same trials (default: on for several --labelled-trials values)")
    p.add_argument("--scratch-steps", type=int, default=d.scratch_steps,
                   help=f"from-scratch model: optimisation steps (default {d.scratch_steps})")
    p.add_argument("--scratch-lr", type=float, default=d.scratch_lr,
                   help=f"from-scratch model: peak learning rate (default {d.scratch_lr:g})")
    p.add_argument("--no-unit-dropout", action="store_true", help="turn off the unit-dropout augmentation")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of new rows, window order and dropout")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="where to train (default auto)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision, help="bf16 runs the forward under autocast")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch decides; on a CPU shared with other jobs, 1 is often several times faster)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="tokenizer worker processes (default 0)")
    p.add_argument("--force", action="store_true", help="replace NEWRUN if it already holds a model")


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    return AdaptConfig(
        mode=args.mode, new_rows=args.new_rows, mixture_start=args.mixture_start,
        mixture_bandwidth=args.mixture_bandwidth, steps=args.steps, lr=args.lr, finetune_steps=args.finetune_steps,
        finetune_lr=args.finetune_lr, batch_size=args.batch_size, optimizer=args.optimizer,
        unit_dropout=not args.no_unit_dropout, evals=args.evals, no_valid=args.no_valid,
        reuse_session=args.reuse_session, scratch_steps=args.scratch_steps, scratch_lr=args.scratch_lr,
        align=args.align, prior_data=args.prior_data, self_train=args.self_train, seed=args.seed,
        device=args.device, precision=args.precision, num_workers=args.num_workers, threads=args.threads,
    )


def choose_sessions(model, all_sessions, patterns, *, reuse: bool):
    """The new sessions to adapt to (see --sessions); known ones are refused unless reused."""
    from popdecode.adapt.new_rows import check_new_sessions
    from popdecode.errors import UserError
    from popdecode.train import setup

    if patterns:
        chosen = setup.select_sessions(all_sessions, patterns)
    else:
        known = set(model.session_vocab.names)
        fresh = [s for s in all_sessions if s.id not in known]
        if not all_sessions:
            raise UserError("the store holds no session; add the new session with popdecode prepare")
        if fresh and not reuse:
            skipped = len(all_sessions) - len(fresh)
            if skipped:
                print(f"popdecode: note: skipping {skipped} session(s) the model already knows; "
                      "name them with --sessions and --reuse-session to adapt them again", file=sys.stderr)
            chosen = fresh
        else:
            chosen = list(all_sessions)
    check_new_sessions(model, chosen, reuse=reuse)
    return chosen


def run(args: argparse.Namespace) -> int:
    from popdecode.adapt.curve import run_points, write_curve
    from popdecode.adapt.labelled import labelled_pieces, parse_labelled_trials
    from popdecode.data.store import open_sessions
    from popdecode.errors import UserError
    from popdecode.evaluate.results import format_table, write_results
    from popdecode.model.io import META, load_model
    from popdecode.utils.atomic import atomic_path, write_json

    cfg = config_from_args(args)
    specs = parse_labelled_trials(args.labelled_trials)
    run_dir, out = Path(args.run), Path(args.out)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; train a model first (popdecode train --out {run_dir})")
    if out.resolve() == run_dir.resolve():
        raise UserError("--out must differ from RUN: the pretrained run is read, never changed")
    if (out / META).exists() and not args.force:
        raise UserError(f"{out} already holds a model; choose another --out or pass --force")
    if out.exists() and not (out / META).exists() and (not out.is_dir() or any(out.iterdir())):
        # NEWRUN is replaced as a whole: never on top of something that is not a run.
        raise UserError(f"{out} exists and is not a run directory; choose another --out")

    # Every check before any training: a bad input fails in seconds, not after an adaptation.
    model, _ = load_model(run_dir)
    sessions = choose_sessions(model, open_sessions(args.data), args.sessions, reuse=cfg.reuse_session)
    window_length = float(model.config.window_length)
    for spec in specs:
        for s in sessions:
            labelled_pieces(s, spec, window_length)
    scratch = args.scratch if args.scratch is not None else len(specs) > 1

    with atomic_path(out) as tmp:
        tmp.mkdir()
        points, rows, info = run_points(run_dir, sessions, specs, cfg, tmp, scratch=scratch)
        last = Path(info.pop("last"))
        for name in RUN_FILES:
            if (last / name).exists():
                shutil.copy2(last / name, tmp / name)
        write_results(tmp / RESULTS_CSV, rows)
        write_curve(tmp, points, title=f"{cfg.mode}: {run_dir.name} -> {', '.join(s.id for s in sessions)}")
        write_json(tmp / CONFIG_JSON, {
            "run": str(run_dir), "data": list(args.data), "sessions": [s.id for s in sessions],
            "labelled_trials": [s.label for s in specs], "scratch": scratch, "config": cfg.to_dict(),
            "model": str(last.relative_to(tmp)),
            "timings": {k: v for k, v in info.items()},
        })

    print(format_table(rows))
    for p in points:
        gain = "" if p.r2_scratch is None or math.isnan(p.r2_scratch) else f"  scratch {p.r2_scratch:.3f}"
        print(f"{p.session:<28} {p.requested:>6} ({p.labelled_trials:>3} trials)  {p.mode} {p.r2_adapt:.3f}{gain}")
    print(f"model: {out}/model.safetensors  results: {out}/{RESULTS_CSV}  curve: {out}/learning_curve.png")
    return 0
