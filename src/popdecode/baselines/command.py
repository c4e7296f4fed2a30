"""Classic decoders on binned spike counts, scored exactly like POYO.

`popdecode baseline --data DIR --model wiener|mlp|gru` fits one decoder per session and
target on lagged spike counts (bins of --bin seconds; --lags bins of history ending at each
behaviour sample, optionally --future bins after it), chooses its hyperparameters on the
valid split, and reports R^2 on the same timestamps, splits and evaluation mask that
`popdecode evaluate` uses for POYO:

  wiener  ridge regression with lags; penalty chosen from --alphas on valid
  mlp     feed-forward network over the window of lagged bins; early-stopped on valid R^2
  gru     recurrent network over the sequence of lagged bins; early-stopped on valid R^2

The per-session table of --split (default test) is printed and written to --out (CSV, with a
JSON copy beside it, default DIR/../baseline_<model>.csv); a third file, e.g.
baseline_<model>.details.json, holds the valid and test rows, the chosen hyperparameters
and timings.
Training weights every train sample equally (POYO weights samples by movement phase).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path

from popdecode.baselines.features import FeatureConfig
from popdecode.baselines.gru import GRUConfig
from popdecode.baselines.mlp import MLPConfig
from popdecode.baselines.run import MODELS, fit_baseline
from popdecode.baselines.training import TrainConfig
from popdecode.baselines.wiener import DEFAULT_ALPHAS
from popdecode.errors import UserError
from popdecode.evaluate.results import format_table, mean_r2, write_results
from popdecode.utils.atomic import write_json
from popdecode.utils.progress import progress


def _json_number(x: float) -> float | None:
    """JSON has no infinities or NaN: an undefined R^2 is stored as null."""
    return x if math.isfinite(x) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="store directories (from `popdecode prepare`)")
    parser.add_argument("--model", required=True, choices=MODELS, help="which baseline to fit")
    parser.add_argument("--session", action="append", metavar="ID", help="only this session (repeatable; default: all)")
    parser.add_argument("--target", metavar="NAME", help="behaviour series to decode (default: each session's targets)")
    parser.add_argument("--split", default="test", choices=("test", "valid"), help="split of the table and --out (default: test)")
    parser.add_argument("--out", metavar="CSV", help="results CSV (default: DIR/../baseline_<model>.csv)")
    feats = parser.add_argument_group("features")
    feats.add_argument("--bin", type=float, default=0.02, help="bin width in seconds (default: 0.02)")
    feats.add_argument("--lags", type=int, default=10, help="bins of history before each sample (default: 10)")
    feats.add_argument("--future", type=int, default=0, help="bins after each sample (default: 0, causal)")
    wiener = parser.add_argument_group("wiener")
    wiener.add_argument("--alphas", type=float, nargs="+", metavar="A",
                        help="ridge penalties to choose from on valid (default: 19 values, 1e-2 to 1e7)")
    nets = parser.add_argument_group("mlp and gru (defaults: mlp 256 hidden x 2 layers, dropout 0.2, "
                                     "batch 256, lr 1e-3; gru 128 hidden x 1 layer, dropout 0.1, batch 512, lr 2e-3)")
    nets.add_argument("--hidden", type=int, help="hidden units per layer")
    nets.add_argument("--layers", type=int, help="hidden layers (mlp) or stacked GRU layers")
    nets.add_argument("--dropout", type=float, help="dropout probability")
    nets.add_argument("--epochs", type=int, default=100, help="most epochs (default: 100)")
    nets.add_argument("--patience", type=int, default=8, help="stop after this many epochs without a better valid R^2 (default: 8)")
    nets.add_argument("--lr", type=float, help="AdamW learning rate")
    nets.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    nets.add_argument("--batch-size", type=int, help="training samples per step")
    nets.add_argument("--seed", type=int, default=0, help="seed of weights, dropout and shuffling (default: 0)")
    nets.add_argument("--threads", type=int, default=1,
                      help="PyTorch CPU threads (default: 1; networks this small gain little from more)")


def _check(args: argparse.Namespace) -> FeatureConfig:
    """One clear line for every argument that cannot work."""
    if not args.bin > 0:
        raise UserError(f"--bin must be a positive number of seconds, got {args.bin}")
    if args.lags < 0 or args.future < 0 or args.lags + args.future == 0:
        raise UserError(f"--lags and --future must be >= 0 with at least one bin in all, got {args.lags} and {args.future}")
    if args.alphas is not None and min(args.alphas) < 0:
        raise UserError("--alphas must be non-negative ridge penalties")
    for name in ("hidden", "layers", "epochs", "patience", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.lr is not None and not args.lr > 0:
        raise UserError(f"--lr must be positive, got {args.lr}")
    if args.out is not None and Path(args.out).suffix != ".csv":
        raise UserError(f"--out must name a .csv file (a .json copy is written beside it), got {args.out}")
    return FeatureConfig(bin=args.bin, lags=args.lags, future=args.future)


def _net_configs(args: argparse.Namespace) -> tuple[MLPConfig, GRUConfig]:
    """The default MLP and GRU configurations with the options the user gave."""
    configs = []
    for config in (MLPConfig(), GRUConfig()):
        for name in ("hidden", "layers", "dropout"):
            if getattr(args, name) is not None:
                setattr(config, name, getattr(args, name))
        t = config.train
        config.train = TrainConfig(
            epochs=args.epochs, patience=args.patience, weight_decay=args.weight_decay, seed=args.seed,
            lr=t.lr if args.lr is None else args.lr,
            batch_size=t.batch_size if args.batch_size is None else args.batch_size,
        )
        configs.append(config)
    return configs[0], configs[1]


def _select(sessions: list, wanted: list[str] | None, stores: list[str]) -> list:
    if not sessions:
        raise UserError(f"no sessions in {', '.join(stores)}; add some with `popdecode prepare INPUT... --out DIR`")
    if not wanted:
        return sessions
    by_id = {s.id: s for s in sessions}
    missing = [w for w in wanted if w not in by_id]
    if missing:
        known = ", ".join(list(by_id)[:10]) + (", ..." if len(by_id) > 10 else "")
        raise UserError(f"no session {missing[0]!r} in {', '.join(stores)}; it holds: {known}")
    return [by_id[w] for w in dict.fromkeys(wanted)]


def run(args: argparse.Namespace) -> int:
    features = _check(args)
    mlp, gru = _net_configs(args)
    from popdecode.data.store import open_sessions  # the store is only needed once the arguments are fine

    if args.model != "wiener":
        import torch

        torch.set_num_threads(args.threads)

    sessions = _select(open_sessions(args.data), args.session, args.data)
    jobs = []
    for s in sessions:
        targets = [args.target] if args.target else list(s.targets)
        if not targets:
            raise UserError(f"session {s.id} names no target series; choose one with --target NAME")
        if args.target and args.target not in s.series:
            raise UserError(
                f"session {s.id} has no behaviour series {args.target!r} "
                f"(it has: {', '.join(sorted(s.series)) or 'none'}); pick another with --target"
            )
        jobs += [(s, t) for t in targets]
    out = Path(args.out) if args.out else Path(args.data[0]).resolve().parent / f"baseline_{args.model}.csv"

    rows = {"valid": [], "test": []}
    details = []
    with progress(jobs, desc=f"baseline {args.model}", unit="session") as bar:
        for session, target in bar:
            bar.set_description(f"baseline {args.model} {session.id}")
            result = fit_baseline(
                session, target, model=args.model, features=features,
                alphas=DEFAULT_ALPHAS if args.alphas is None else args.alphas,
                mlp=mlp, gru=gru, progress_bar=bar,
            )
            for split, row in result.rows.items():
                rows[split].append(row)
            details.append({"session": session.id, "readout": target, **result.details,
                            "r2": {split: _json_number(row.r2) for split, row in result.rows.items()}})

    print(format_table(rows[args.split]))
    other = "valid" if args.split == "test" else "test"
    # A session whose targets never vary on a split (a rat resting through every valid block)
    # has R^2 = -inf there: left out of the mean and named, as training's selection does.
    undefined = sorted({r.session for r in rows[other] if not math.isfinite(r.r2) and not math.isnan(r.r2)})
    defined = [r for r in rows[other] if r.session not in undefined]
    left_out = f", leaving out {', '.join(undefined)} (targets constant there)" if undefined else ""
    print(f"({other} split: mean R^2 over sessions {mean_r2(defined):.4f}{left_out}; "
          f"see {out.with_suffix('')}.details.json)")
    write_results(out, rows[args.split])
    write_json(out.with_name(out.stem + ".details.json"), {
        "command": "baseline",
        "model": args.model,
        "stores": [str(Path(d).resolve()) for d in args.data],
        "features": asdict(features),
        "config": {"alphas": list(DEFAULT_ALPHAS if args.alphas is None else args.alphas)} if args.model == "wiener"
        else asdict(mlp if args.model == "mlp" else gru),
        "rows": {split: [{**asdict(r), "r2": _json_number(r.r2)} for r in rs] for split, rs in rows.items()},
        "sessions": details,
    })
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0
