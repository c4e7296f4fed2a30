"""Where new units start in unit identification: ``--mixture-start mean`` against ``tuning`` (issue 20).

    python benchmarks/adapt_start.py --data SIM --pretrained RUN [RUN ...] --work DIR [options]

For every pretrained run, held-out session, start (``--starts``) and seed (``--seeds``) this runs

    popdecode adapt RUN --data SIM --sessions SID --mode unit-id --labelled-trials 10,all
                    --steps STEPS --mixture-start START --no-scratch --seed SEED --threads 1

(skipped when its output exists, so the study can be stopped and resumed), then prints one
table: per run, session, labelled budget and start, the valid R^2 of the start itself (the
mixtures as they start, before any step: what the start alone decodes; it does not depend on
the seed), and test R^2 after adaptation, mean over seeds (± half the seeds' range). The pretrained runs are those of
``benchmarks/scaling_sessions.py`` (``WORK/runs/small-nNN``); their training stores must be
where their metadata says (the tuning start reads the known units' tuning there).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptation import _f, cli  # noqa: E402


def adapt_dir(work: Path, run: Path, sid: str, start: str, seed: int, bandwidth: float | None) -> Path:
    tag = start if bandwidth is None else f"{start}-b{bandwidth:g}"
    return work / "runs" / f"{run.parent.parent.name}-{run.name}-{sid}-{tag}-s{seed}"


def start_r2(run: Path, data: str, sid: str, budget: str, start: str, bandwidth: float | None) -> float:
    """Valid R^2 of ``run`` adapted to ``sid`` with no step taken: new rows as the start makes them."""
    from popdecode.adapt.adapt import AdaptConfig, attach_mixtures, evaluate_test, known_sessions, mean_session_r2
    from popdecode.adapt.labelled import labelled_pieces, parse_labelled_trials
    from popdecode.adapt.new_rows import add_rows, adapted_meta, check_new_sessions
    from popdecode.data.store import open_sessions
    from popdecode.model.io import load_model

    model, meta = load_model(run)
    cfg = AdaptConfig(device="cpu", mixture_start=start,
                      **({} if bandwidth is None else {"mixture_bandwidth": bandwidth}))
    session = next(s.load() for s in open_sessions([data]) if s.id == sid)
    pieces = {sid: labelled_pieces(session, parse_labelled_trials(budget)[0], float(model.config.window_length))}
    known = known_sessions(model, meta, cfg) if start == "tuning" else None
    readouts = check_new_sessions(model, [session])
    masks = add_rows(model, [session])
    meta = adapted_meta(meta, [session], readouts, pieces)
    attach_mixtures(model, masks, meta, [session], pieces, cfg, known=known)
    rows = evaluate_test(model, meta, [session], method="start", cfg=cfg, split="valid")
    return mean_session_r2(rows, sid)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="store with the held-out sessions")
    p.add_argument("--pretrained", nargs="+", required=True, metavar="RUN", help="pretrained run directories")
    p.add_argument("--work", required=True, help="directory for the adapted runs and commands.txt")
    p.add_argument("--sessions", nargs="+", default=["sim-a0-s4", "sim-a8-s0"], help="held-out sessions")
    p.add_argument("--starts", nargs="+", default=["mean", "tuning"], help="--mixture-start values")
    p.add_argument("--bandwidths", nargs="+", type=float, default=[], metavar="B",
                   help="also the tuning start with these --mixture-bandwidth values")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150, help="adapt --steps (the scaling study's)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    arms = [(s, None) for s in args.starts] + [("tuning", b) for b in args.bandwidths]

    results: dict[tuple, list[dict]] = {}
    starts: dict[tuple, dict[str, float]] = {}
    for run in map(Path, args.pretrained):
        for sid in args.sessions:
            for start, bandwidth in arms:
                starts[run, sid, start, bandwidth] = {b: start_r2(run, args.data, sid, b, start, bandwidth)
                                                      for b in ("10", "all")}
                for seed in args.seeds:
                    out = adapt_dir(work, run, sid, start, seed, bandwidth)
                    if not (out / "learning_curve.json").exists():
                        extra = [] if bandwidth is None else ["--mixture-bandwidth", f"{bandwidth:g}"]
                        cli(work, ["adapt", str(run), "--data", args.data, "--sessions", sid, "--mode", "unit-id",
                                   "--labelled-trials", "10,all", "--steps", str(args.steps), "--mixture-start", start,
                                   *extra, "--no-scratch", "--seed", str(seed), "--threads", str(args.threads),
                                   "--out", str(out)])
                    curve = {r["requested"]: r for r in json.loads((out / "learning_curve.json").read_text())}
                    results.setdefault((run, sid, start, bandwidth), []).append(curve)

    print("| pretrained | held out | start | start alone (valid), 10 / all trials | adapted (test), 10 trials | all trials |")
    print("|---|---|---|---|---|---|")
    for (run, sid, start, bandwidth), curves in results.items():
        cells = []
        for budget in ("10", "all"):
            values = [c[budget]["r2_adapt"] for c in curves if budget in c]
            values = [v for v in values if v is not None and not math.isnan(v)]
            mean = sum(values) / len(values) if values else float("nan")
            spread = max(values) - min(values) if len(values) > 1 else float("nan")
            cells.append(f"{_f(mean)} (±{_f(spread / 2)})" if len(values) > 1 else _f(mean))
        name = start if bandwidth is None else f"tuning, bandwidth {bandwidth:g}"
        alone = " / ".join(_f(starts[run, sid, start, bandwidth][b]) for b in ("10", "all"))
        print(f"| {run.parent.parent.name}/{run.name} | {sid} | {name} | {alone} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
