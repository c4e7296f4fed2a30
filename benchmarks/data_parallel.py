"""Data-parallel training throughput: one process with every thread against N processes under
torchrun (DistributedDataParallel, popdecode's own wrapper), on the same global batches.

    python benchmarks/data_parallel.py                          # CPU: 1 x 2 threads vs 2 x 1 thread
    python benchmarks/data_parallel.py --reference              # torch-brain the same two ways too
    python benchmarks/data_parallel.py --nproc 4 --device cuda  # 1 GPU vs 4 GPUs

Each step is a global batch of synthetic windows (``poyo_bench.synthetic_windows``); process r
of N trains on windows r, r + N, ... of it, as the trainer's sampler deals them, with the
trainer's per-step all-reduce of the loss, and AdamW. The single-process run sees the whole
batch. Windows per second = global batch / median step time (rank 0's clock, which waits for
the gradient all-reduce of every step). ``--reference`` runs torch-brain's POYO (same weights,
its padded layout, plain DistributedDataParallel) in both arrangements too, so that the gain
of processes over threads is compared model with model.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poyo_bench as pb  # noqa: E402

from popdecode.train import distributed  # noqa: E402
from popdecode.utils.progress import progress  # noqa: E402


def worker(args) -> None:
    """One process's steps (a world of one without torchrun); rank 0 writes its step times."""
    world = distributed.from_env()
    torch.set_num_threads(args.threads)
    device, created = distributed.start(world, torch.device(args.device))
    ours, theirs = pb.make_models(args.preset, reference=args.model == "torch-brain", seed=0)
    model = ours if theirs is None else theirs
    model.to(device).train()
    net = distributed.wrap(model, world, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(args.warmup + args.steps):
        windows = pb.synthetic_windows(args.batch, seed=1000 + i)[world.rank :: world.size]
        if theirs is None:
            batch, targets = (pb.to_device(t, device) for t in pb.pack(windows))
        else:
            x, targets, mask = (pb.to_device(t, device) for t in pb.pad_reference(windows, ours))

        def step():
            with pb.autocast(args.precision, device):
                pred = net(batch)["hand_vel"] if theirs is None else net(**x)[mask]
            loss = F.mse_loss(pred.float(), targets if theirs is None else targets[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            distributed.all_sum([float(loss.detach()), 0.0], world, device)  # the trainer's bookkeeping

        dt = pb.timed(step, device)
        if i >= args.warmup:
            times.append(dt)
    if world.is_main:
        Path(args.report).write_text(json.dumps({"median_s": statistics.median(times)}))
    distributed.finish(world, created)


def launch(args, model: str, nproc: int, threads: int) -> float:
    """Windows/s of ``model`` in ``nproc`` processes with ``threads`` threads each."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [sys.executable, __file__, "--worker", "--report", report, "--threads", str(threads),
               "--preset", args.preset, "--batch", str(args.batch), "--device", args.device,
               "--precision", args.precision, "--model", model, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if nproc > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "POPDECODE_PROGRESS": "0"}
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL if nproc > 1 else None)
        return args.batch / json.loads(Path(report).read_text())["median_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="poyo-1.3M", help="model preset (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="global batch, divisible by --nproc (default: %(default)s)")
    p.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all: the single process takes all, "
                                                           "each of the N processes 1/N (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu, or cuda: one GPU per process")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--steps", type=int, default=6, help="timed steps (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the two runs (default: %(default)s)")
    p.add_argument("--reference", action="store_true", help="also time torch-brain's POYO both ways")
    p.add_argument("--model", choices=("popdecode", "torch-brain"), default="popdecode", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.batch % args.nproc:
        p.error(f"--batch {args.batch} must divide among --nproc {args.nproc} processes")
    if args.device == "cuda" and torch.cuda.device_count() < args.nproc:
        p.error(f"--device cuda --nproc {args.nproc}: torch sees {torch.cuda.device_count()} GPUs")
    per_process = max(args.threads // args.nproc, 1)
    print(f"# data-parallel training, {datetime.date.today()}, {pb.machine(args.device)}, load before: {pb.load()}")
    print(f"# {args.preset}, global batch {args.batch}, {args.precision}, {args.steps} timed steps after "
          f"{args.warmup} warm-up, median; runs alternate {args.repeats} times")
    models = ["popdecode", "torch-brain"] if args.reference else ["popdecode"]
    rows = []
    runs = [(i + 1, model) for i in range(args.repeats) for model in models]
    for i, model in progress(runs, desc="runs", leave=False):
        rows.append((i, model, launch(args, model, 1, args.threads), launch(args, model, args.nproc, per_process)))
    t0 = time.strftime("%H:%M UTC", time.gmtime())
    print(f"| run ({t0}) | model | 1 process x {args.threads} threads, windows/s | {args.nproc} processes x "
          f"{per_process} thread{'s' if per_process > 1 else ''}, windows/s | processes/threads |")
    print("|---|---|---:|---:|---:|")
    for i, model, a, b in rows:
        print(f"| {i} | {model} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    print(f"# load after: {pb.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
