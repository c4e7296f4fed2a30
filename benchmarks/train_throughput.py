"""Training throughput: windows per second (forward + backward + optimiser step), popdecode
against torch-brain's POYO, same weights, same windows, in the same run.

    python benchmarks/train_throughput.py                      # both presets, fp32, 2 threads
    python benchmarks/train_throughput.py --compile            # also the compiled processor
    python benchmarks/train_throughput.py --precision fp32,bf16 --no-reference
    python benchmarks/train_throughput.py --device cuda --precision fp32,bf16 --configs poyo-1.3M:32,poyo-1.3M:256

Each timed step draws a fresh batch of synthetic windows (~1.1k tokens: 100 units' delimiters
plus ~900 spikes, log-normal spread; ~100 queries), the same batch for every contestant, and
the contestants take turns step by step, so a busy machine slows all of them alike. Both use
AdamW and an MSE loss; packing/padding the batch is not timed. torch-brain always runs in
float32 (its CPU path pads every window to the longest in the batch). ``--compile`` adds,
for each precision, a copy of our model (same weights) whose processor layers train
through TorchInductor (``POYO.compile_for_training``); its compilation happens in the
first, untimed warm-up step and is printed.

On a GPU (``--device cuda``) every step is timed to the end of its queued kernels, torch-brain
runs in each precision asked for (bf16 under CUDA autocast, as ours), each ratio compares
the two models in the same precision, and the peak GPU memory each contestant's step adds
to what is resident (activations, gradients, temporaries) is printed; the CPU-time table is
left out.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poyo_bench as pb  # noqa: E402

from popdecode.utils.progress import progress  # noqa: E402


def ours_step(model, opt, batch, targets, precision):
    with pb.autocast(precision, targets.device):
        pred = model(batch)["hand_vel"]
    loss = F.mse_loss(pred.float(), targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def reference_step(model, opt, x, targets, mask, precision):
    with pb.autocast(precision, targets.device):
        pred = model(**x)
    loss = F.mse_loss(pred[mask].float(), targets[mask])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run_config(preset: str, batch_size: int, args) -> dict:
    device = torch.device(args.device)
    ours, theirs = pb.make_models(preset, reference=not args.no_reference, seed=args.seed)
    ours.to(device).train()
    contestants = {}
    for precision in args.precision:
        # One copy of the model per precision, so that optimiser states do not mix.
        model = ours if len(args.precision) == 1 else copy.deepcopy(ours)
        contestants[f"popdecode {precision}"] = ("ours", model, torch.optim.AdamW(model.parameters(), lr=1e-4), precision)
        if args.compile:
            compiled = copy.deepcopy(ours)
            compiled.compile_for_training()
            contestants[f"popdecode {precision} compiled"] = (
                "ours", compiled, torch.optim.AdamW(compiled.parameters(), lr=1e-4), precision)
    if theirs is not None:
        theirs.to(device).train()
        # On CPU torch-brain runs in float32 only (its bf16 would pay oneDNN's per-shape
        # kernel builds on every padded batch); on a GPU in each precision asked for.
        for precision in (args.precision if pb.on_gpu(device) else ["fp32"]):
            model = theirs if precision == "fp32" or not pb.on_gpu(device) else copy.deepcopy(theirs)
            contestants[f"torch-brain {precision}"] = (
                "ref", model, torch.optim.AdamW(model.parameters(), lr=1e-4), precision)

    times = {name: [] for name in contestants}
    cpu = {name: [] for name in contestants}
    memory = {name: [] for name in contestants}
    n = args.warmup + args.steps
    for i in progress(range(n), desc=f"{preset} b{batch_size}", leave=False):
        windows = pb.synthetic_windows(batch_size, seed=args.seed * 1000 + i)
        batch, targets = (pb.to_device(t, device) for t in pb.pack(windows))
        x, ptargets, mask = (pb.to_device(t, device) for t in pb.pad_reference(windows, ours)) \
            if theirs is not None else (None, None, None)
        for name, (kind, model, opt, precision) in contestants.items():
            before = pb.reset_peak_memory(device)
            c0 = time.process_time()
            if kind == "ours":
                dt = pb.timed(lambda: ours_step(model, opt, batch, targets, precision), device)
            else:
                dt = pb.timed(lambda: reference_step(model, opt, x, ptargets, mask, precision), device)
            if pb.on_gpu(device):
                # Every contestant's weights and optimiser state stay allocated throughout:
                # what counts is the peak a step adds to them.
                memory[name].append(pb.peak_memory_mib(device) - before)
            if i == 0 and name.endswith("compiled"):
                print(f"# {preset} b{batch_size}: first step of {name} (compiles) {dt:.1f} s", flush=True)
            if i >= args.warmup:
                times[name].append(dt)
                cpu[name].append(time.process_time() - c0)
    wall = {name: batch_size / statistics.median(t) for name, t in times.items()}
    per_cpu = {name: batch_size / statistics.median(t) for name, t in cpu.items()}
    peak = {name: max(m) for name, m in memory.items() if m}
    return wall, per_cpu, peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="poyo-1.3M:32,poyo-11.8M:8", help="preset:batch pairs (default: %(default)s)")
    p.add_argument("--precision", default="fp32", help="popdecode precisions, comma-separated: fp32, bf16 (default: %(default)s)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per contestant (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true", help="skip torch-brain")
    p.add_argument("--compile", action="store_true",
                   help="also time our model with compiled processor layers (compile time not counted)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.precision = [s.strip() for s in args.precision.split(",") if s.strip()]
    if any(s not in ("fp32", "bf16") for s in args.precision):
        p.error("--precision takes fp32 and/or bf16")
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup 1 or more (the first step compiles)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU here")
    torch.set_num_threads(args.threads)

    print(f"# train throughput, {datetime.date.today()}, {pb.machine(args.device)}, load before: {pb.load()}")
    print(f"# {args.steps} timed steps after {args.warmup} warm-up; windows ~1.1k tokens, ~100 queries; AdamW; median step")
    rows, cpu_rows, memory_rows = [], [], []
    for item in args.configs.split(","):
        preset, batch = item.split(":")
        wall, per_cpu, peak = run_config(preset, int(batch), args)
        rows.append((preset, int(batch), wall))
        cpu_rows.append((preset, int(batch), per_cpu))
        memory_rows.append((preset, int(batch), peak))
    tables = [("wall-clock windows/s", rows)]
    if not pb.on_gpu(args.device):
        tables.append(("windows per process CPU-second (insensitive to other load)", cpu_rows))
    for title, table in tables:
        print(f"{title}:")
        print_table(table)
    if pb.on_gpu(args.device):
        print("peak GPU memory a step adds to the resident weights and optimiser states, MiB:")
        print_table(memory_rows, with_ratios=False)
    print(f"# load after: {pb.load()}")
    return 0


def print_table(rows, with_ratios: bool = True):
    names = list(rows[0][2])
    print("| preset | batch | " + " | ".join(names) + (" | ratios |" if with_ratios else " |"))
    print("|---|---|" + "---|" * len(names) + ("---|" if with_ratios else ""))
    for preset, batch, res in rows:
        if not with_ratios:
            print(f"| {preset} | {batch} | " + " | ".join(f"{res[n]:.0f}" for n in names) + " |")
            continue
        ratios = []
        fp32 = res.get("popdecode fp32")
        for n, v in res.items():
            precision = n.split()[1] if n.startswith("popdecode") else None
            # Against torch-brain in the same precision where it ran in it (GPU), else its fp32.
            same = res.get(f"torch-brain {precision}") if precision and precision != "fp32" else None
            ref = same or res.get("torch-brain fp32")
            if precision and ref:
                ratios.append(f"{n.split(maxsplit=1)[1]}/torch-brain{' ' + precision if same else ''} {v / ref:.2f}x")
            if n.endswith("compiled") and res.get(n[: -len(" compiled")]):
                ratios.append(f"{n.split(maxsplit=1)[1]}/eager {v / res[n[: -len(' compiled')]]:.2f}x")
        if fp32 and "popdecode bf16" in res:
            ratios.append(f"bf16/fp32 {res['popdecode bf16'] / fp32:.2f}x")
        print(f"| {preset} | {batch} | " + " | ".join(f"{res[n]:.1f}" for n in names) + f" | {'; '.join(ratios)} |")


if __name__ == "__main__":
    sys.exit(main())
