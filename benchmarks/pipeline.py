"""The data pipeline's share of a training step (issue 6: under 10 %).

    python benchmarks/pipeline.py                        # simulated store, workers 0 and 1
    python benchmarks/pipeline.py --data STORE --workers 0,1,2

Trains poyo-1.3M (batch 32, LAMB, unit dropout: the recipe's defaults) for ``--steps`` steps
with the real trainer and reads the trainer's own measurement from its log: ``data_share``,
the part of the training time spent waiting for the next batch (sampling windows,
tokenising, collating, the copy to the device). With 0 workers the training process
tokenises between steps; with workers, tokenisation overlaps the steps in other processes
(on a 2-core machine they take CPU time from the step's threads, which the windows-per-second
column shows). Without ``--data`` a simulated store of 2 animals x 4 sessions (30-250 units each)
is written to a temporary directory first.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poyo_bench as pb  # noqa: E402


def simulated_store(directory: Path) -> Path:
    from popdecode.data.store import StoreWriter
    from popdecode.simulate.simulator import SimulationConfig, simulate_dataset

    sessions, _ = simulate_dataset(SimulationConfig(seed=0), show_progress=False)
    with StoreWriter(directory) as writer:
        for s in sessions:
            writer.add(s)
    return directory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a popdecode store (default: simulate one)")
    p.add_argument("--workers", default="0,1", help="DataLoader worker counts to compare (default: %(default)s)")
    p.add_argument("--steps", type=int, default=40, help="training steps per run (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="windows per batch (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process (default: %(default)s)")
    args = p.parse_args(argv)

    from popdecode.train.config import TrainConfig
    from popdecode.train.trainer import train_from_scratch

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else simulated_store(Path(tmp) / "store")
        print(f"# data pipeline, {datetime.date.today()}, {pb.machine()}, load before: {pb.load()}")
        print(f"# poyo-1.3M, batch {args.batch}, {args.steps} steps, {args.threads} threads, data: {args.data or 'simulated'}")
        print("| workers | windows/s | data share of the training time |")
        print("|---|---|---|")
        for workers in (int(w) for w in args.workers.split(",")):
            config = TrainConfig(data=[str(data)], batch_size=args.batch, epochs=1000, max_steps=args.steps,
                                 eval_every=1000, num_workers=workers, threads=args.threads)
            row = train_from_scratch(config, Path(tmp) / f"run{workers}")["log"][-1]
            print(f"| {workers} | {row['windows_per_s']:.1f} | {100 * row['data_share']:.1f} % |", flush=True)
        print(f"# load after: {pb.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
