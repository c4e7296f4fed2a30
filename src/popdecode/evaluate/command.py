"""Per-session R^2 of a trained model on a split, and a file of every prediction.

Windows of 1 s every 0.5 s cover each trial of the split; predictions of the same sample from
overlapping windows are averaged, put back in the series' own units, and scored with R^2
over the evaluation mask (e.g. the reach period), per session, averaged over dimensions.
Prints the table, writes it as CSV + JSON (--out, default RUN/results_<split>.csv) and
writes every prediction with its target and mask to HDF5 (--predictions, default
RUN/predictions_<split>.h5; layout in popdecode.evaluate.prediction_file).

--causal scores the model the way a live decoder runs (popdecode serve): every sample is
decoded from the window that ends at it, [t - 1 s, t), answered at the window's end, with no
look-ahead and no averaging. It costs one window per sample instead of about two per second.
--causal --delay D scores a live decoder that reports each sample D seconds late (popdecode
serve --delay D): sample t from the window that ends at t + D. Tens of milliseconds buy part
of the gap to the stitched R^2 (BENCHMARKS.md, "What a causal window lacks").

examples:
  popdecode evaluate runs/sim --data sim --split test
  popdecode evaluate runs/sim --data sim --split test --causal
  popdecode evaluate runs/sim --data sim --split test --causal --delay 0.05
  popdecode evaluate runs/sim --data sim --split valid --sessions 'sim-a0-*'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from popdecode.data.session import values_at


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by popdecode train (or adapt)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="store directories holding the sessions")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="which split to score (default test)")
    p.add_argument("--sessions", nargs="+", default=[], metavar="GLOB", help="only sessions whose id matches (default: every session the model knows)")
    p.add_argument("--out", default=None, metavar="FILE", help="results table CSV (a .json copy is written beside it); default RUN/results_<split>.csv")
    p.add_argument("--predictions", default=None, metavar="FILE", help="HDF5 file of every prediction; default RUN/predictions_<split>.h5")
    p.add_argument("--causal", action="store_true",
                   help="decode every sample from the window ending at it, as popdecode serve does "
                        "(files default to RUN/results_<split>_causal.csv and predictions_<split>_causal.h5)")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                   help="with --causal: report each sample SECONDS late, decoded from the window that ends "
                        "SECONDS after it, as popdecode serve --delay does (default 0; method "
                        "poyo-causal+<ms>ms, files RUN/results_<split>_causal_delay<ms>ms.csv)")
    p.add_argument("--method", default=None, help="method name in the results table (default poyo, or poyo-causal with --causal)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (default 64)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default auto)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 runs the forward under autocast")


def run(args: argparse.Namespace) -> int:
    from popdecode.data.store import open_sessions
    from popdecode.errors import UserError
    from popdecode.evaluate.metrics import r2_score
    from popdecode.evaluate.predict import predict_split
    from popdecode.evaluate.prediction_file import SessionPredictions, write_predictions
    from popdecode.evaluate.results import ResultRow, format_table, variant_suffix, write_results
    from popdecode.model.io import load_model
    from popdecode.train import setup
    from popdecode.train.trainer import resolve_device

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; train a model first (popdecode train --out {run_dir})")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.delay and not args.causal:
        raise UserError("--delay applies to causal decoding: add --causal")
    device = resolve_device(args.device)
    model, meta = load_model(run_dir, device=device)

    all_sessions = open_sessions(args.data)
    chosen = setup.select_sessions(all_sessions, args.sessions) if args.sessions else all_sessions
    known = set(model.session_vocab.names)
    unknown = [s.id for s in chosen if s.id not in known]
    if args.sessions and unknown:
        raise UserError(
            f"session '{unknown[0]}' is not in the model; adapt the model to it first (popdecode adapt) "
            f"or pick one of: {', '.join(sorted(known)[:8])}"
        )
    sessions = [s for s in chosen if s.id in known]
    if not sessions:
        raise UserError(
            f"none of the {len(chosen)} sessions in {' '.join(args.data)} is known to the model; "
            "evaluate on the data it was trained on, or adapt it first (popdecode adapt)"
        )
    if unknown:
        print(f"popdecode: note: skipping {len(unknown)} session(s) the model does not know, e.g. '{unknown[0]}'",
              file=sys.stderr)
    window_length = float(model.config.window_length)
    if not 0 <= args.delay < window_length:
        raise UserError(f"--delay must be at least 0 and shorter than the model's {window_length:g} s window "
                        f"(got {args.delay:g})")
    tokenizer = setup.make_tokenizer(model, sessions, meta, train=False, window_length=window_length)
    if not any(len(s.split(args.split)) for s in sessions):
        raise UserError(f"no session has a '{args.split}' split; choose another --split or re-run popdecode prepare")

    method = args.method or ((f"poyo-causal+{args.delay * 1e3:g}ms" if args.delay else "poyo-causal")
                             if args.causal else "poyo")
    stitched = predict_split(
        model, sessions, tokenizer, split=args.split, normalization=setup.normalization_from_meta(meta),
        batch_size=args.batch_size, device=device, precision=args.precision, desc=f"evaluate {args.split}",
        causal=args.causal, delay=args.delay,
    )

    by_id = {s.id: s for s in sessions}
    items, rows = [], []
    for (sid, readout), st in sorted(stitched.items()):
        series = by_id[sid].series[readout]
        target = values_at(series, st.timestamps)
        mask = st.eval_mask & np.isfinite(target).all(axis=1)
        items.append(SessionPredictions(
            session=sid, readout=readout, timestamps=st.timestamps, prediction=st.predictions,
            target=target, eval_mask=mask, columns=list(series.columns), unit=str(series.unit),
        ))
        with np.errstate(over="ignore", divide="ignore"):  # constant targets: R^2 = -inf
            r2 = r2_score(target[mask], st.predictions[mask])
        rows.append(ResultRow(method=method, split=args.split, session=sid, readout=readout,
                              r2=r2, n_timestamps=int(mask.sum())))

    suffix = variant_suffix(causal=args.causal, delay=args.delay)
    out_csv = Path(args.out) if args.out else run_dir / f"results_{args.split}{suffix}.csv"
    pred_path = Path(args.predictions) if args.predictions else run_dir / f"predictions_{args.split}{suffix}.h5"
    write_predictions(pred_path, items, attrs={"run": str(run_dir), "split": args.split, "method": method})
    write_results(out_csv, rows)
    print(format_table(rows))
    print(f"results: {out_csv}  predictions: {pred_path}")
    return 0
