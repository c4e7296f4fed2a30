"""How fast the store reads windows, and how little it costs to open a big one.

    python benchmarks/store.py [--sessions 100] [--minutes 10] [--reads 20000] [--open-sessions 1000]

1. Writes a store of ``--sessions`` synthetic sessions (Poisson spikes, 100 units at
   20 Hz, ``--minutes`` long, one 2-D behaviour series at 100 Hz) and times ``--reads``
   random 1 s windows (spikes and behaviour) on one core, first with every file cold in
   this process, then again warm; the in-memory :class:`Session` reading the same windows
   is the reference.
2. Writes a store of ``--open-sessions`` short sessions (100 units each, so the manifest
   is as large as for long ones) and, in a fresh process, measures the resident memory
   after importing the store module, after opening the store, and after opening every
   session in it.

The stores go to a temporary directory that is removed afterwards (``--keep DIR`` keeps
them there instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.data.store import Store, StoreWriter
from popdecode.utils.progress import progress


def synthetic_session(sid: str, *, units: int, rate: float, seconds: float, seed: int) -> Session:
    """Poisson spikes (``rate`` Hz per unit) and a smooth 2-D velocity sampled at 100 Hz."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(units * rate * seconds)
    times = np.sort(rng.uniform(0.0, seconds, n))
    ts = np.arange(0.0, seconds, 0.01)
    vel = np.cumsum(rng.standard_normal((len(ts), 2)), axis=0).astype(np.float32)
    return Session(
        id=sid,
        spike_times=times,
        spike_units=rng.integers(0, units, n),
        unit_ids=[f"{sid}/unit{i:03d}" for i in range(units)],
        series={"hand_vel": Series(ts, vel, columns=["x", "y"], unit="cm/s")},
        targets=["hand_vel"],
        domain=Intervals(np.array([0.0]), np.array([seconds])),
    )


def write_store(root: Path, count: int, seconds: float, desc: str) -> None:
    with StoreWriter(root) as writer:
        for i in progress(range(count), desc=desc, unit="session"):
            writer.add(synthetic_session(f"sim{i:04d}", units=100, rate=20.0, seconds=seconds, seed=i))


def time_reads(sessions, picks, starts) -> float:
    t = time.perf_counter()
    for k, t0 in zip(picks, starts):
        sessions[k].window(t0, t0 + 1.0)
    return len(picks) / (time.perf_counter() - t)


MEMORY_PROBE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
out = {"python": rss()}
from popdecode.data.store import Store
out["after_import"] = rss()
store = Store(sys.argv[1])
out["sessions"] = len(store)
out["after_open_store"] = rss()
opened = list(store)
out["after_open_all_sessions"] = rss()
for s in opened:
    s.window(0.5, 1.5)
out["after_one_window_each"] = rss()
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--open-sessions", type=int, default=1000)
    parser.add_argument("--keep", type=Path, default=None, help="write the stores here and keep them")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="popdecode-bench-"))
    try:
        seconds = args.minutes * 60.0
        big = root / "store_read"
        t = time.perf_counter()
        write_store(big, args.sessions, seconds, "write")
        write_s = time.perf_counter() - t
        size_mb = sum(p.stat().st_size for p in big.rglob("*")) / 2**20
        store = Store(big)
        sessions = list(store)
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(sessions), args.reads)
        starts = rng.uniform(0.0, seconds - 1.0, args.reads)
        spikes = np.mean([len(sessions[k].window(t0, t0 + 1).spike_times) for k, t0 in zip(picks[:500], starts[:500])])
        fresh = list(Store(big))  # new objects: nothing mapped yet
        cold = time_reads(fresh, picks, starts)
        warm = time_reads(fresh, picks, starts)
        in_memory = [s.load() for s in sessions[: min(20, len(sessions))]]
        mem_picks = picks % len(in_memory)
        reference = time_reads(in_memory, mem_picks, starts)
        print(f"store of {len(store)} sessions x {args.minutes:g} min, 100 units at 20 Hz, 2-D series at 100 Hz: "
              f"{size_mb:.0f} MB, written in {write_s:.1f} s")
        print(f"random 1 s windows (spikes + behaviour, ~{spikes:.0f} spikes each), one core:")
        print(f"  first pass (files mapped on first use): {cold:,.0f} windows/s")
        print(f"  second pass:                            {warm:,.0f} windows/s")
        print(f"  in-memory Session.window, reference:    {reference:,.0f} windows/s")

        many = root / "store_open"
        write_store(many, args.open_sessions, 2.0, "write")
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(many)], capture_output=True, text=True, check=True)
        mem = json.loads(probe.stdout)
        manifest_mb = (many / "manifest.json").stat().st_size / 2**20
        print(f"store of {mem['sessions']} sessions (100 units each; manifest {manifest_mb:.1f} MB), resident memory of a fresh process:")
        print(f"  python alone {mem['python']:.0f} MB; after importing popdecode.data.store {mem['after_import']:.0f} MB")
        print(f"  after Store(path) {mem['after_open_store']:.0f} MB; after opening every session {mem['after_open_all_sessions']:.0f} MB")
        print(f"  after reading one window from every session {mem['after_one_window_each']:.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("POPDECODE_PROGRESS", "1")
    main()
