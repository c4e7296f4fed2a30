"""How time and memory per window grow with spikes per window (1,000 to 16,000 tokens).

    python benchmarks/scaling.py

For each token count, a batch of windows with that many tokens each (100 units' delimiters
plus spikes; 100 queries) runs a poyo-1.3M training step (forward + backward) and an
inference forward. Reported per window: training-step time, inference time, and training
memory (bytes of the tensors autograd saves for backward, each storage counted once: the
activation memory a step holds at its peak, beyond weights). The claim to check: each grows
linearly with the token count; a least-squares line through the points is printed with the
largest relative deviation from it (goal: within 25 %). Times are process CPU time (robust on
a shared machine; with --threads 1 this is the compute time) and wall-clock time.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import poyo_bench as pb  # noqa: E402

from popdecode.utils.progress import progress  # noqa: E402


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def line_fit(x, y) -> tuple[float, float, float]:
    """slope, intercept, max |y - fit| / fit."""
    a, b = np.polyfit(x, y, 1)
    fit = a * np.asarray(x) + b
    return a, b, float(np.max(np.abs(np.asarray(y) - fit) / fit))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", default="1000,2000,4000,8000,16000")
    p.add_argument("--batch", type=int, default=4, help="windows per step (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(s) for s in args.tokens.split(",")]
    model, _ = pb.make_models("poyo-1.3M", reference=False, seed=args.seed)
    print(f"# scaling, {datetime.date.today()}, poyo-1.3M, batch {args.batch}, {pb.machine()}, load before: {pb.load()}")

    rows = []
    for n in progress(counts, desc="tokens", leave=False):
        windows = pb.synthetic_windows(args.batch, spikes=n - 200, spread=0.0, seed=args.seed + n)
        batch, targets = pb.pack(windows)

        def train_step():
            F.mse_loss(model(batch)["hand_vel"], targets).backward()

        model.train()
        mem = saved_bytes(lambda: model(batch)["hand_vel"].sum())
        train_step()  # warm-up
        tr = []
        for _ in range(args.repeats):
            model.zero_grad(set_to_none=True)
            c0, t0 = time.process_time(), time.perf_counter()
            train_step()
            tr.append((time.perf_counter() - t0, time.process_time() - c0))
        model.eval()
        inf = []
        with torch.inference_mode():
            model(batch)
            for _ in range(args.repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                model(batch)
                inf.append((time.perf_counter() - t0, time.process_time() - c0))
        b = args.batch
        rows.append(dict(
            tokens=n,
            train_cpu=min(c for _, c in tr) / b * 1e3, train_wall=min(w for w, _ in tr) / b * 1e3,
            infer_cpu=min(c for _, c in inf) / b * 1e3, infer_wall=min(w for w, _ in inf) / b * 1e3,
            mem=mem / b / 2**20,
        ))

    print("| tokens/window | train step CPU ms/window | (wall) | inference CPU ms/window | (wall) | saved activations MB/window |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tokens']} | {r['train_cpu']:.1f} | {r['train_wall']:.1f} | {r['infer_cpu']:.2f} | {r['infer_wall']:.2f} | {r['mem']:.2f} |")
    x = [r["tokens"] for r in rows]
    for key, label in [("train_cpu", "train CPU ms"), ("infer_cpu", "inference CPU ms"), ("mem", "memory MB")]:
        a, b0, dev = line_fit(x, [r[key] for r in rows])
        verdict = "linear (within 25%)" if dev <= 0.25 else "NOT within 25% of a line"
        print(f"{label}: {a * 1000:.3f} per 1k tokens + {b0:.2f}; max deviation from the line {100 * dev:.1f}% -> {verdict}")
    print(f"# load after: {pb.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
