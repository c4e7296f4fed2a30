"""What a causal window lacks: R^2 against the delay a live decoder may report with.

    python benchmarks/causal_delay.py --data store --session mihi_20140303 --runs runs/mihi_s0 runs/mihi_s1
    python benchmarks/causal_delay.py --data sim --session sim-a0-s0 --runs runs/sim_s0 --delays 0 0.04 0.1

A live decoder (`popdecode serve`) answers time t from the spikes before t. Allowed to report
each sample D seconds late (`serve --delay D`), it also sees the D seconds after t. This
prints, for each delay, the test R^2 of every POYO run (`evaluate --causal --delay D`: sample t
from the window that ends at t + D) beside the Wiener filter and the MLP given the same
look-ahead (`baseline --future`: D in bins of 20 ms after t, 10 bins of history), and the
stitched R^2 of each run (the field's protocol: windows that see up to 0.5 s after t,
averaged).

What the classical decoders gain from the future is a measure of how much the spikes after t
say about the behaviour at t (feedback, lags); a model that gains much more than they do is
weak at the window's end rather than short of information.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adaptation import _f, _r2  # noqa: E402

from popdecode.evaluate.results import variant_suffix  # noqa: E402
from popdecode.utils.atomic import write_json  # noqa: E402

BIN = 0.02
LAGS = 10


def poyo(run: Path, data: Path, session: str, delay: float | None) -> float:
    """Test R^2 of a run: stitched (delay None) or causal with a delay; evaluated unless done."""
    causal = delay is not None
    name = f"results_test{variant_suffix(causal=causal, delay=delay or 0.0)}.json"
    extra = (["--causal"] + (["--delay", str(delay)] if delay else [])) if causal else []
    if not (run / name).exists():
        subprocess.run(["popdecode", "evaluate", str(run), "--data", str(data), "--split", "test",
                        "--sessions", session, *extra], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "POPDECODE_PROGRESS": "0"})
    return _r2(run / name, session)


def classical(model: str, data: Path, session: str, delay: float, out: Path) -> float:
    """Test R^2 of a baseline with round(delay / 20 ms) bins after each sample."""
    future = round(delay / BIN)
    csv = out / f"{model}_{session}_future{future}.csv"
    if not csv.with_suffix(".json").exists():
        subprocess.run(["popdecode", "baseline", "--data", str(data), "--session", session, "--model", model,
                        "--bin", str(BIN), "--lags", str(LAGS), "--future", str(future), "--out", str(csv)],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "POPDECODE_PROGRESS": "0"})
    return _r2(csv.with_suffix(".json"), session)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", required=True, type=Path, help="the store holding --session")
    p.add_argument("--session", required=True)
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="run directories that know --session")
    p.add_argument("--delays", nargs="+", type=float, default=[0.0, 0.02, 0.04, 0.1, 0.2],
                   help="seconds (the baselines round each to whole 20 ms bins)")
    p.add_argument("--baselines", nargs="*", default=["wiener", "mlp"], choices=["wiener", "mlp", "gru"])
    p.add_argument("--out", type=Path, default=Path("causal_delay"), help="folder for the baselines' results")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    names = [r.name for r in args.runs]
    header = ["delay", *names, "POYO mean", *args.baselines]
    rows = []
    for d in args.delays:
        ours = [poyo(r, args.data, args.session, d) for r in args.runs]
        theirs = [classical(m, args.data, args.session, d, args.out) for m in args.baselines]
        rows.append([f"{d * 1e3:g} ms", *ours, sum(ours) / len(ours), *theirs])
        print(f"delay {d:g} s: POYO {' / '.join(_f(x) for x in ours)}, "
              + ", ".join(f"{m} {_f(x)}" for m, x in zip(args.baselines, theirs)), flush=True)
    stitched = [poyo(r, args.data, args.session, None) for r in args.runs]
    rows.append(["stitched", *stitched, sum(stitched) / len(stitched), *["" for _ in args.baselines]])

    print(f"\n{args.session}, test split; POYO: evaluate --causal --delay D; baselines: {LAGS} bins of "
          f"{BIN * 1e3:g} ms before t and round(D / {BIN * 1e3:g} ms) after\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(x if isinstance(x, str) else _f(x) for x in row) + " |")
    write_json(args.out / f"{args.session}.json", {"session": args.session, "header": header, "rows": rows})


if __name__ == "__main__":
    main()
