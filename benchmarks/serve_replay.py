"""Live decoding of a recorded test split against `evaluate --causal`, on the same samples.

    python benchmarks/serve_replay.py --run runs/mihi --data store --session mihi_20140303
    python benchmarks/serve_replay.py --run runs/sim --data sim --session sim-a0-s0 --rates 50 100 --kinds events binned
    python benchmarks/serve_replay.py --run runs/mihi --data store --session mihi_20140303 --delay 0.05

For each rate and input kind: `popdecode serve RUN --record` listens, `popdecode replay STORE
--split test` streams the session's test trials in real time (spikes and the recorded
behaviour, over LSL on this machine alone), and serve is stopped with Ctrl-C (SIGINT) once the
replay ends. The recording is scored the two ways serve prints it (decoded ticks interpolated
at the recorded behaviour samples of the evaluated periods; and "held": the newest decoded
sample pushed before each, as task software has it) and set beside `popdecode evaluate
--causal` (every sample decoded from the window that ends at it) and the usual stitched R^2.
Goal (issue 19): live R^2 within 0.005 of causal R^2, on the same number of samples.
``--delay D`` runs serve with ``--delay D`` and compares with ``evaluate --causal --delay D``.

Also printed: latency from the arrival of a tick's newest spike to the push of its decoded
sample (p50, p99), and ticks decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adaptation import _r2  # noqa: E402

from popdecode.evaluate.results import variant_suffix  # noqa: E402


def evaluate(run: Path, data: Path, session: str, causal: bool, delay: float = 0.0) -> tuple[float, int]:
    """(R^2, samples) of `popdecode evaluate` on the test split, run unless its results exist."""
    results = run / f"results_test{variant_suffix(causal=causal, delay=delay)}.json"
    if not results.exists():
        cmd = ["popdecode", "evaluate", str(run), "--data", str(data), "--split", "test", "--sessions", session]
        extra = (["--causal"] + (["--delay", str(delay)] if delay else [])) if causal else []
        subprocess.run(cmd + extra, check=True, stdout=subprocess.DEVNULL)
    n = next(r["n_timestamps"] for r in json.loads(results.read_text()) if r["session"] == session)
    return _r2(results, session), n


def live(run: Path, data: Path, session: str, *, rate: float, kind: str, record: Path, threads: int,
         delay: float = 0.0) -> Path:
    """One replay through serve; returns the recording."""
    env = {**os.environ, "POPDECODE_PROGRESS": "0"}
    serve = subprocess.Popen(
        ["popdecode", "serve", str(run), "--session", session, "--input", f"{session}-spikes",
         "--truth", f"{session}-behavior", "--rate", str(rate), "--record", str(record), "--loopback",
         "--threads", str(threads), "--wait", "120", "--status-every", "30", "--delay", str(delay)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        subprocess.run(["popdecode", "replay", str(data), "--session", session, "--split", "test", "--kind", kind,
                        "--loopback", "--wait", "60"], env=env, check=True, stdout=subprocess.DEVNULL)
        time.sleep(1.5)  # the last ticks
    finally:
        serve.send_signal(signal.SIGINT)
        out, _ = serve.communicate(timeout=60)
    if serve.returncode != 0 or not record.exists():
        sys.exit(f"serve failed ({serve.returncode}):\n{out}")
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--run", required=True, type=Path, help="a trained or adapted run directory")
    p.add_argument("--data", required=True, type=Path, help="the store holding --session")
    p.add_argument("--session", required=True)
    p.add_argument("--rates", nargs="+", type=float, default=[50.0, 100.0], help="serve --rate values")
    p.add_argument("--kinds", nargs="+", default=["events"], choices=["events", "binned"], help="replay --kind values")
    p.add_argument("--threads", type=int, default=1, help="serve --threads (default 1)")
    p.add_argument("--delay", type=float, default=0.0, help="serve --delay and evaluate --causal --delay (default 0)")
    p.add_argument("--out", type=Path, default=None, help="folder for the recordings (default: RUN/live)")
    args = p.parse_args()

    import numpy as np

    from popdecode.serve.recording import Recording

    out = args.out or args.run / "live"
    out.mkdir(parents=True, exist_ok=True)
    stitched, _ = evaluate(args.run, args.data, args.session, causal=False)
    causal, n_causal = evaluate(args.run, args.data, args.session, causal=True, delay=args.delay)
    tag = f"_delay{args.delay * 1e3:g}ms" if args.delay else ""  # in the recordings' names
    rows = []
    for kind in args.kinds:
        for rate in args.rates:
            rec_path = live(args.run, args.data, args.session, rate=rate, kind=kind, threads=args.threads,
                            delay=args.delay, record=out / f"{args.session}_{kind}_{rate:g}hz{tag}.h5")
            rec = Recording.load(rec_path)
            r2, n = rec.score()
            held, _ = rec.score(held=True)
            ticks = rec.ticks
            lat = 1e3 * (ticks["pushed"] - ticks["arrival"])
            lat = lat[np.isfinite(lat)]
            rows.append((kind, rate, r2, held, n, np.percentile(lat, 50), np.percentile(lat, 99), len(ticks["time"])))
            print(f"{kind} {rate:g} Hz: live R^2 {r2:.4f} (held {held:.4f}) on {n} samples", flush=True)

    print(f"\nrun {args.run}, session {args.session}, test split; stitched R^2 {stitched:.4f}, "
          f"causal R^2 {causal:.4f} ({n_causal} samples){f', delay {args.delay:g} s' if args.delay else ''}\n")
    print("| input | rate | live R^2 (interpolated) | live - causal | held | held - causal | samples "
          "| latency p50 / p99 (ms) | ticks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, rate, r2, held, n, p50, p99, count in rows:
        print(f"| {kind} | {rate:g} Hz | {r2:.4f} | {r2 - causal:+.4f} | {held:.4f} | {held - causal:+.4f} | {n} "
              f"| {p50:.2f} / {p99:.2f} | {count} |")


if __name__ == "__main__":
    main()
