"""One model on many sessions against one model per session, at the same steps per session (issue 20).

    python benchmarks/joint_single.py run   --data STORE --work DIR --sessions ID ... [--seeds 0 1 2] [--jobs 2]
                                            [--joint-flags "--readout-balance readouts"] [--flags "--unit-init tuning"]
    python benchmarks/joint_single.py table --data STORE --work DIR --sessions ID ... [--seeds 0 1 2]

For every seed: one small-data-recipe model per session, trained for ``--steps-per-session``
steps, and one joint model on all the sessions together, trained for that many steps *per
session* (``--sampling session``: every session the same share of each epoch's windows), so
each session gets the same training in both arms. Each run is scored with ``popdecode
evaluate --split test``; the table gives, per session, the seed means and the per-seed
difference joint - single, with the session's animal (the store's ``subject``) and how many
sessions of that animal the pool holds: the real pool (BENCHMARKS.md, "A larger model for the
joint run") suggested that the joint model gains on sessions whose animal has other sessions
in the pool and not on an animal's only session, and this is the test of that on the simulator.

``run`` launches ``--jobs`` commands at a time (one torch thread each) and skips a run whose
results file exists, so it can be stopped and resumed; commands go to ``DIR/commands.txt`` and
each run's output to ``DIR/<run>.log``; the table to ``DIR/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptation import _r2, log_command, train_windows  # noqa: E402
from real_scale import SMALL  # noqa: E402  (the small-data recipe's model, batch 16, lr 3e-3, one thread)

BATCH = int(SMALL[SMALL.index("--batch-size") + 1])  # the epochs below are counted in its steps
VALIDATIONS = 14  # as the real joint runs (14 epochs, validated after each)


def plan(args) -> list[tuple[str, list[str], list[str]]]:
    """(run name, sessions, train flags) of every run, singles first within each seed."""
    windows = {sid: train_windows(Path(args.data), sid) for sid in args.sessions}
    steps_per_epoch = {sid: math.ceil(w / BATCH) for sid, w in windows.items()}
    joint_epoch = math.ceil(sum(windows.values()) / BATCH)  # an epoch keeps the pool's window count
    runs = []
    for seed in args.seeds:
        for sid in args.sessions:
            epochs = math.ceil(args.steps_per_session / steps_per_epoch[sid])
            runs.append((f"single_{sid}_s{seed}", [sid], [
                "--epochs", str(epochs), "--eval-every", str(max(1, epochs // VALIDATIONS)), "--seed", str(seed),
                *shlex.split(args.flags)]))
        epochs = math.ceil(args.steps_per_session * len(args.sessions) / joint_epoch)
        runs.append((f"joint_s{seed}", list(args.sessions), [
            "--epochs", str(epochs), "--eval-every", str(max(1, epochs // VALIDATIONS)), "--seed", str(seed),
            "--sampling", "session", *shlex.split(args.flags), *shlex.split(args.joint_flags)]))
    return runs


def execute(work: Path, data: str, name: str, sessions: list[str], flags: list[str]) -> float:
    """Train and evaluate one run in child processes (skipped when its test results exist)."""
    out = work / name
    if (out / "results_test.json").exists():
        return 0.0
    tick = time.perf_counter()
    for argv in (["train", "--data", data, "--out", str(out), "--sessions", *sessions, *SMALL, *flags],
                 ["evaluate", str(out), "--data", data, "--split", "test"]):
        log_command(work, "popdecode " + " ".join(shlex.quote(a) for a in argv))
        with open(work / f"{name}.log", "a") as log:
            code = subprocess.call([sys.executable, "-m", "popdecode", *argv], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "POPDECODE_PROGRESS": "0"})
        if code:
            raise SystemExit(f"{name}: popdecode {argv[0]} failed with status {code}; see {work / name}.log")
    return time.perf_counter() - tick


def table(args) -> str:
    from popdecode.data.store import open_sessions

    work = Path(args.work)
    stored = {s.id: s for s in open_sessions([args.data]) if s.id in args.sessions}
    subject = {sid: s.metadata.get("subject", "unknown") for sid, s in stored.items()}
    animal = {sid: sid if subject[sid] == "unknown" else subject[sid] for sid in args.sessions}
    pool = {sid: sum(animal[o] == animal[sid] for o in args.sessions) for sid in args.sessions}

    def r2(name: str, sid: str) -> float:
        path = work / name / "results_test.json"
        return _r2(path, sid) if path.exists() else float("nan")

    def mean(values: list[float]) -> float:
        values = [v for v in values if v == v]
        return sum(values) / len(values) if values else float("nan")

    seeds = args.seeds
    lines = [f"Test R^2; seeds {' / '.join(map(str, seeds))}; {args.steps_per_session} steps per session in both arms.",
             "",
             "| session | units | animal (its sessions in the pool) | single, per seed | mean | joint, per seed | mean "
             "| joint - single, per seed | mean |",
             "|---|---:|---|---|---:|---|---:|---|---:|"]
    rows = []
    for sid in args.sessions:
        single = [r2(f"single_{sid}_s{s}", sid) for s in seeds]
        joint = [r2(f"joint_s{s}", sid) for s in seeds]
        diff = [j - s for j, s in zip(joint, single)]
        rows.append((pool[sid], diff))
        lines.append(f"| {sid} | {stored[sid].num_units} | {animal[sid]} ({pool[sid]}) | {' / '.join(f'{v:.3f}' for v in single)} "
                     f"| {mean(single):.3f} | {' / '.join(f'{v:.3f}' for v in joint)} | {mean(joint):.3f} "
                     f"| {' / '.join(f'{d:+.3f}' for d in diff)} | **{mean(diff):+.3f}** |")
    lines.append("")
    for label, keep in (("animal with other sessions in the pool", lambda n: n > 1),
                        ("animal's only session in the pool", lambda n: n == 1)):
        picked = [r for r in rows if keep(r[0])]
        if picked:
            diffs = [d for r in picked for d in r[1] if d == d]
            better = sum(d > 0 for d in diffs)
            lines.append(f"- {label}: {len(picked)} sessions, joint - single {mean(diffs):+.3f} on average, "
                         f"joint better in {better} of {len(diffs)} session-seed pairs")
    text = "\n".join(lines)
    (work / "summary.md").write_text(text + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("run", "table"))
    p.add_argument("--data", required=True, help="the store (popdecode prepare / simulate)")
    p.add_argument("--work", required=True, help="directory for the runs, their logs and the table")
    p.add_argument("--sessions", nargs="+", required=True, help="session ids of the pool")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps-per-session", type=int, default=800,
                   help="training steps each session gets, in its single run and in the joint run (default 800)")
    p.add_argument("--joint-flags", default="", metavar="FLAGS",
                   help="more train flags for the joint runs alone, e.g. '--readout-balance windows' (singles "
                        "have one readout; point a new --work at an old one's single_* runs to reuse them)")
    p.add_argument("--flags", default="", metavar="FLAGS",
                   help="more train flags for every run of both arms, e.g. '--unit-init tuning'")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each (default 2)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "run":
        runs = plan(args)
        # Joint runs are the longest: start them first so the lanes finish together.
        runs.sort(key=lambda r: not r[0].startswith("joint"))
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, seconds in zip([r[0] for r in runs], pool.map(
                    lambda r: execute(work, args.data, r[0], r[1], r[2]), runs)):
                print(f"{name}: {seconds:.0f} s", flush=True)
        (work / "plan.json").write_text(json.dumps([{"run": n, "sessions": s, "flags": f} for n, s, f in runs], indent=1))
    print(table(args))


if __name__ == "__main__":
    main()
