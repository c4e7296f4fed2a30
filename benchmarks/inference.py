"""Inference speed of poyo-1.3M: latency of one 1 s window at batch 1 (median, p99) and
windows per second at batch 256, popdecode against torch-brain (same weights, same windows).

    python benchmarks/inference.py                  # 2 threads
    python benchmarks/inference.py --threads 1
    python benchmarks/inference.py --no-compile     # skip the compiled path (saves ~30-60 s)

Batch 1 is what a streaming decoder does: popdecode's ``model.decode_window`` on one window's
tokens (~1.1k tokens, 100 queries), eager ("popdecode") and after
``model.compile_for_inference()`` ("popdecode compiled", TorchInductor; the compile time is
printed), and torch-brain's padded forward on the same window. Times are wall-clock per call
under ``torch.inference_mode``; process CPU time per call is printed too, because on a shared
machine it is far less sensitive to other people's load. The contestants take turns in
blocks of ``--block`` consecutive windows (default 10; every window is timed and counted):
a streaming decoder runs window after window in its own process, so its weights stay in
the CPU's caches, and a block keeps them there, while turns of a single window (``--block
1``) make each contestant's weights evict the others' before every call.

Batch 256: popdecode's packed forward pass on 256 windows at once (eager), the compiled
``decode_window`` run on the same 256 windows one after another, and torch-brain's padded
forward on all 256.

``--device cuda`` runs the same on a GPU, each call timed to the end of its queued kernels
(there the CPU-time column only says how long the host spent launching them).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poyo_bench as pb  # noqa: E402

from popdecode.utils.progress import progress  # noqa: E402


def measure(fn, device: torch.device | str = "cpu") -> tuple[float, float]:
    pb.sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    pb.sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="poyo-1.3M")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--windows", type=int, default=300, help="batch-1 windows timed (default: %(default)s)")
    p.add_argument("--block", type=int, default=10,
                   help="batch-1 windows each contestant decodes in a row before the next one's turn (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="large batch size (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="large-batch repetitions (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="leave out the compiled decode_window")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to decode (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU here")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    ours, theirs = pb.make_models(args.preset, reference=not args.no_reference, seed=args.seed)
    ours.to(device).eval()
    if theirs is not None:
        theirs.to(device).eval()
    windows = pb.synthetic_windows(args.windows, seed=args.seed + 7)
    print(f"# inference, {datetime.date.today()}, {args.preset}, {pb.machine(device)}, load before: {pb.load()}")
    compiled = None
    if not args.no_compile:
        compiled = copy.deepcopy(ours)  # the same weights; its decode_window compiled
        c0, t0 = time.process_time(), time.perf_counter()
        ok = compiled.compile_for_inference()
        print(f"compile_for_inference: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU"
              + ("" if ok else " -- FAILED, the compiled row below is eager"))

    def decode(model, b):
        with torch.inference_mode():
            model.decode_window(input_units=b.input_units, input_types=b.input_types, input_times=b.input_times,
                                session_index=int(b.session_index[0]), output_times=b.output_times)

    def ref_one(x):
        with torch.inference_mode():
            theirs(**x)

    contestants = {"popdecode": lambda b, x: decode(ours, b)}
    if compiled is not None:
        contestants["popdecode compiled"] = lambda b, x: decode(compiled, b)
    if theirs is not None:
        contestants["torch-brain"] = lambda b, x: ref_one(x)
    res = {name: ([], []) for name in contestants}
    warm = 10
    inputs = [(pb.to_device(pb.pack([w])[0], device),
               pb.to_device(pb.pad_reference([w], ours)[0], device) if theirs is not None else None) for w in windows]
    blocks = [range(i, min(i + args.block, len(inputs))) for i in range(0, len(inputs), max(1, args.block))]
    for block in progress(blocks, desc="batch 1", leave=False):
        for name, fn in contestants.items():
            for i in block:
                wall, cpu = measure(lambda: fn(*inputs[i]), device)
                if i >= warm:
                    res[name][0].append(wall); res[name][1].append(cpu)

    print(f"batch 1, {len(windows) - warm} windows of ~1.1k tokens / 100 queries, {args.threads} threads, "
          f"turns of {args.block} window(s):")
    print("| model | median ms | p99 ms | median CPU ms |")
    print("|---|---|---|---|")
    for name, (wall, cpu) in res.items():
        if wall:
            s = pb.summary(wall)
            print(f"| {name} | {1e3 * s['median']:.2f} | {1e3 * s['p99']:.2f} | {1e3 * pb.summary(cpu)['median']:.2f} |")

    big = pb.synthetic_windows(args.batch, seed=args.seed + 11)
    batch = pb.to_device(pb.pack(big)[0], device)
    x = pb.to_device(pb.pad_reference(big, ours)[0], device) if theirs is not None else None
    singles = [pb.to_device(pb.pack([w])[0], device) for w in big] if compiled is not None else []

    def one_by_one():
        for b in singles:
            decode(compiled, b)

    rates = {"popdecode": [], "popdecode compiled, one by one": [], "torch-brain": []}
    for _ in progress(range(args.repeats + 1), desc=f"batch {args.batch}", leave=False):
        with torch.inference_mode():
            rates["popdecode"].append(measure(lambda: ours(batch), device)[0])
            if compiled is not None:
                rates["popdecode compiled, one by one"].append(measure(one_by_one, device)[0])
            if theirs is not None:
                rates["torch-brain"].append(measure(lambda: theirs(**x), device)[0])
    print(f"batch {args.batch} ({args.repeats} timed after 1 warm-up), windows/s:")
    out = {k: args.batch / pb.summary(v[1:])["median"] for k, v in rates.items() if len(v) > 1}
    ref = out.get("torch-brain")
    print(" | ".join(f"{k} {v:.0f}" + (f" ({v / ref:.2f}x)" if ref and k != "torch-brain" else "")
                     for k, v in out.items()))
    print(f"# load after: {pb.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
