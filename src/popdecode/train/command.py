"""Train a POYO model on one or more stores.

Every session of the stores (or those matching --sessions) trains one model: its units and
the session get their own embedding rows, each target series its own readout. The run
directory receives the best model by validation R^2 (model.safetensors + model.json), a CSV
log (train_log.csv), the configuration (train_config.json) and a resumable checkpoint
(checkpoint/). The optimiser follows POYO: LAMB, flat rate for half the run then cosine to
lr/1e4, unit dropout, reach-weighted MSE.

recipes (--recipe; every flag you give wins over the recipe):
  auto        the default: small-data below 5 h of training data, else the paper's model and
              rate with epochs shared among sessions by sqrt of their duration (--sampling)
  small-data  poyo-1.3M with depth 2, 8 latents per step, 1 cross / 2 self heads; batch 16 at
              lr 3e-3; epochs sized to 64,000 training windows (~4,000 steps), validation ~20 times;
              every session the same share of each epoch, every window the same weight in the loss
              whatever it decodes (--sampling session --readout-balance windows).
              The paper's recipe sits on its initial plateau for most of a short CPU run on a few
              sessions (BENCHMARKS.md, "A first run that works"); this one beats the Wiener filter
              on each real monkey session within minutes on 2 cores
  paper       exactly the published recipe: poyo-1.3M, batch 32, lr 3.125e-5 x batch, 100 epochs,
              every window of every session once per epoch (--sampling duration)

--embedding-lr-scale K steps the unit and session embedding tables at K x --lr (default 1):
10 trains sets of 4-16 simulated sessions faster, but hurt adaptation from 1-2 sessions and
did not move 32 off the plateau (BENCHMARKS.md, "Why bigger sets stay on the plateau").

--unit-init tuning starts each unit's embedding from its tuning (one projection for every
session): it takes 32 simulated sessions off the plateau in 430 steps instead of 1,500 and
more. The auto and small-data recipes switch it on from 8 sessions; below that (and on the
5-session real pool) the random start was as good or better (BENCHMARKS.md, "Unit embeddings
that start from tuning"). --unit-init random keeps the paper's start on any pool.

examples:
  popdecode train --data store --out runs/first                 # the recipe picks model and rate
  popdecode train --data sim --recipe paper --out runs/paper      # the published recipe
  popdecode train --data sim --preset poyo-1.3M --out runs/sim --epochs 50 --batch-size 32
  popdecode train --data store --sessions 'chewie*' --out runs/chewie --time-budget 10
  popdecode train --data sim --out runs/sim --resume      # continue an interrupted run

several processes (GPUs of one machine, or several machines), data-parallel:
  torchrun --standalone --nproc_per_node 4 -m popdecode train --data store --out runs/x --batch-size 128
--batch-size is then the global batch (each process takes batch / processes); the processes
share the validation and rank 0 writes the run; the result is the run one process would make,
up to rounding and dropout. Across machines (torchrun --nnodes ... --rdzv-endpoint ...), --data
must be readable and --out shared by every machine (--resume reads the checkpoint everywhere).
"""

from __future__ import annotations

import argparse

from popdecode.errors import UserError
from popdecode.tokenize.sampler import SAMPLING_MODES
from popdecode.train.config import READOUT_BALANCES, UNIT_INITS, TrainConfig
from popdecode.train.recipe import RECIPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="store directories (popdecode prepare / simulate)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write (model, log, checkpoint)")
    p.add_argument("--recipe", choices=RECIPES, default="auto",
                   help="what the flags below default to: auto, small-data or paper (see above; default auto)")
    p.add_argument("--preset", default=None, help="model size: poyo-1.3M or poyo-11.8M (default: the recipe's, poyo-1.3M)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="change one field of the preset, e.g. depth=2 or num_latents_per_step=8 (repeatable)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"passes over the training windows (default: the recipe's; paper {d.epochs})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"windows per step (default: the recipe's; small-data 16, paper {d.batch_size})")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the recipe's; small-data 3e-3, paper 3.125e-5 x batch size)")
    p.add_argument("--optimizer", choices=("lamb", "adamw"), default=d.optimizer, help="optimiser (default lamb)")
    p.add_argument("--embedding-lr-scale", type=float, default=d.embedding_lr_scale,
                   help="rate of the unit and session embedding tables as a multiple of --lr (default 1)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"decoupled weight decay (default {d.weight_decay:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of initial weights, window order and dropout")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="where to train (default auto)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision, help="bf16 runs the forward under autocast (on CPU: pays only with AMX or AVX512-BF16; the blocks whose shapes change per batch stay float32)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="tokenizer worker processes (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch decides)")
    p.add_argument("--compile", action="store_true",
                   help="train the processor layers through TorchInductor (same function; needs a C++ compiler; "
                        "compiles ~1 min first; 0.85-0.9x of eager speed on the 2-core VM measured in BENCHMARKS.md)")
    p.add_argument("--sessions", nargs="+", default=[], metavar="GLOB", help="train only on sessions whose id matches")
    p.add_argument("--sampling", choices=SAMPLING_MODES, default=None,
                   help="how each epoch's windows are shared among sessions: duration = every window of every "
                        "session once (the paper's draw; a long session takes most steps), session = the same "
                        "share for every session, sqrt = shares proportional to sqrt(train duration). An epoch "
                        "keeps its number of windows; short sessions repeat at fresh offsets, long ones are "
                        "subsampled (default: the recipe's; small-data session, the best on the joint real set with "
                        "--readout-balance windows; auto above 5 h sqrt; paper duration; kept on --resume)")
    p.add_argument("--readout-balance", choices=READOUT_BALANCES, default=None,
                   help="how readouts (tasks) weigh in each step's loss when sessions differ in what they "
                        "decode: readouts = each readout's weighted mean once per step, however few of the "
                        "step's windows carry it (the paper recipe's); windows = each by its share of the step's windows, "
                        "so that --sampling alone sets what every session gets (the small-data recipe's, with "
                        "--sampling session: BENCHMARKS.md, 'What costs Mihi in the joint model'; kept on --resume)")
    p.add_argument("--unit-init", choices=UNIT_INITS, default=None,
                   help="where unit embeddings start: random (the paper's) or tuning = moved towards what "
                        "each unit encodes in the train split, through one projection every session shares, "
                        "so that a run on many sessions leaves its initial plateau (BENCHMARKS.md, 'Unit "
                        "embeddings that start from tuning'; default: the recipe's, tuning from 8 sessions)")
    p.add_argument("--exclude-sessions", nargs="+", default=[], metavar="GLOB", help="leave out sessions whose id matches")
    p.add_argument("--no-unit-dropout", action="store_true", help="turn off the unit-dropout augmentation")
    p.add_argument("--end-queries", type=int, default=0, metavar="N",
                   help="for real-time use: N extra readout queries per training window over its last --end-span seconds, "
                        "so that the model learns to decode at a window's very end, as popdecode serve and "
                        "evaluate --causal do (BENCHMARKS.md, 'Causal R^2'; default 0)")
    p.add_argument("--end-span", type=float, default=0.1, metavar="SECONDS",
                   help="the end queries' span: an even grid over the window's last SECONDS (default 0.1)")
    p.add_argument("--end-only", action="store_true",
                   help="train on the end queries alone (none at the window's recorded samples): every "
                        "training query is where a live decoder reads; needs --end-queries")
    p.add_argument("--select", choices=("stitched", "causal"), default="stitched",
                   help="which valid R^2 picks the kept model: stitched (the field's protocol, default) or causal "
                        "(every sample from the window that ends at it, as popdecode serve decodes; for models "
                        "trained with --end-queries for real-time use)")
    p.add_argument("--loss-weight", action="append", default=[], metavar="SET=W",
                   help="loss weight of an interval set, e.g. reach=5 (repeatable; defaults hold=0.1 reach=5 return=1 outlier=0)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="validate every N epochs (default 1; small-data: about 20 validations per run)")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS", help="also checkpoint every N steps (default: epoch ends)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="stop cleanly after this many minutes, keeping the best model")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard (needs the tensorboard package)")


def _loss_weights(items: list[str]) -> dict[str, float]:
    from popdecode.errors import UserError
    from popdecode.train.config import DEFAULT_LOSS_WEIGHTS

    weights = dict(DEFAULT_LOSS_WEIGHTS)
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UserError(f"--loss-weight expects SET=WEIGHT such as reach=5, got {item!r}")
    return weights


def _model_options(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs for POYOConfig fields; values parse as int, then float, else stay text."""
    import dataclasses

    from popdecode.errors import UserError
    from popdecode.model.config import POYOConfig

    fields = {f.name for f in dataclasses.fields(POYOConfig)}
    out: dict = {}
    for item in items:
        key, sep, value = (x.strip() for x in item.partition("="))
        if not sep or key not in fields:
            raise UserError(f"--model-option expects KEY=VALUE with KEY one of {', '.join(sorted(fields))}; got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def recipe_fields(args: argparse.Namespace) -> tuple[dict, str]:
    """Preset, rate, batch, sampling, epochs and validation cadence: the user's flags, the
    rest from the recipe (:mod:`popdecode.train.recipe`); and the line that says so."""
    import dataclasses

    from popdecode.data.store import open_sessions
    from popdecode.model import PRESETS
    from popdecode.tokenize.sampler import TrainWindowSampler
    from popdecode.train import recipe as recipes
    from popdecode.train.setup import select_sessions

    if args.preset is not None and args.preset not in PRESETS:
        raise UserError(f"unknown preset '{args.preset}'; choose one of {', '.join(PRESETS)}")
    sessions = select_sessions(open_sessions(list(args.data)), args.sessions, args.exclude_sessions)
    chosen = recipes.choose(args.recipe, sessions)
    given = {"preset": args.preset, "model_overrides": _model_options(args.model_option),
             "batch_size": args.batch_size, "lr": args.lr, "sampling": args.sampling,
             "readout_balance": args.readout_balance, "unit_init": args.unit_init,
             "epochs": args.epochs, "eval_every": args.eval_every}
    shape = recipes.resolve(chosen, given, windows_per_epoch=1)
    model_cfg = dataclasses.replace(PRESETS[shape["preset"]], **shape["model_overrides"])
    windows = TrainWindowSampler(intervals=[s.split("train") for s in sessions],
                                 window_length=model_cfg.window_length).total_windows
    fields = recipes.resolve(chosen, given, windows_per_epoch=windows)
    return {**fields, "recipe": chosen.name}, recipes.describe(chosen, fields)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    fields, line = recipe_fields(args)
    config = TrainConfig(
        data=list(args.data), sessions=list(args.sessions), exclude_sessions=list(args.exclude_sessions),
        **fields, optimizer=args.optimizer, weight_decay=args.weight_decay,
        embedding_lr_scale=args.embedding_lr_scale, max_steps=args.max_steps,
        unit_dropout=not args.no_unit_dropout, loss_weights=_loss_weights(args.loss_weight),
        end_queries=args.end_queries, end_span=args.end_span, end_only=args.end_only,
        select=args.select, checkpoint_every_steps=args.checkpoint_every,
        time_budget_min=args.time_budget, tensorboard=args.tensorboard, seed=args.seed,
        device=args.device, precision=args.precision, num_workers=args.num_workers, threads=args.threads,
        compile=args.compile,
    )
    return config, line


def run(args: argparse.Namespace) -> int:
    from popdecode.train import distributed
    from popdecode.train.trainer import train_from_scratch

    config, recipe_line = config_from_args(args)
    if not args.resume and distributed.from_env().is_main:
        print(recipe_line, flush=True)  # a resumed run keeps what its own start resolved
    result = train_from_scratch(config, args.out, resume=args.resume)
    if not distributed.from_env().is_main:
        return 0  # rank 0 reports
    best = result["best_valid_r2"]
    best_text = "n/a (no valid split)" if best is None else f"{best:.4f} (epoch {result['best_epoch'] + 1})"
    print(f"trained {result['steps']} steps in {result['elapsed_s']:.0f} s; best valid R^2 {best_text}")
    for sid, r2 in sorted(result["valid_r2"].items()):
        print(f"  {sid:<28} " + ("     n/a (valid targets constant)" if r2 is None else f"{r2:8.4f}"))
    if result["stopped"]:
        print(f"stopped early ({result['stopped']}); continue with --resume")
    print(f"model: {args.out}/model.safetensors  log: {args.out}/train_log.csv")
    return 0
