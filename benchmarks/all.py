"""Every speed figure of issue 6 in one command: each benchmark prints its own table.

    POPDECODE_PROGRESS=0 python benchmarks/all.py                 # ~10-25 min on 2 cores
    POPDECODE_PROGRESS=0 python benchmarks/all.py --quick         # fewer steps and windows
    POPDECODE_PROGRESS=0 python benchmarks/all.py --device cuda   # the GPU figures alone

On the CPU:

1. training throughput, both presets, against torch-brain; bf16 too where the CPU has
   bfloat16 matrix units (AMX or AVX512-BF16) (train_throughput.py);
2. batch-1 latency (median, p99) and batch-256 windows/s (inference.py);
3. time and memory per window against tokens per window (scaling.py);
4. the data pipeline's share of a training step (pipeline.py).

On a GPU (where torch sees one, or with ``--device cuda``): training windows/s of both presets
at the CPU's batch sizes and at larger ones, fp32 and bf16, each against torch-brain in the
same precision, with each step's peak GPU memory; then batch-1 latency and batch-256
windows/s (eager; TorchInductor's compilation is left out to keep a lent machine's minutes).
``benchmarks/gpu.sh`` runs that part on a lent machine in one call.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference  # noqa: E402
import pipeline  # noqa: E402
import poyo_bench as pb  # noqa: E402
import scaling  # noqa: E402
import train_throughput  # noqa: E402


def _part(main, argv: list[str]) -> int:
    """Run one benchmark; a failure is printed and counted, and the next benchmark still runs
    (on a lent GPU machine one broken part must not cost the others' figures)."""
    try:
        rc = main(argv)
    except Exception:  # noqa: BLE001 - report and go on
        traceback.print_exc()
        rc = 1
    print(flush=True)
    return rc


# Batch sizes for the GPU: the CPU goals' and ones large enough to fill a GPU.
GPU_CONFIGS = "poyo-1.3M:32,poyo-1.3M:256,poyo-11.8M:8,poyo-11.8M:64"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and windows (noisier figures)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cpu: the CPU figures; cuda: the GPU figures; auto (default): the CPU figures, "
                        "then the GPU ones where torch sees a GPU")
    p.add_argument("--no-reference", action="store_true", help="leave torch-brain out (where it is not installed)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU here")
    threads = ["--threads", str(args.threads)]
    ref = ["--no-reference"] if args.no_reference else []
    steps = ["--steps", "3", "--warmup", "1"] if args.quick else ["--steps", "6", "--warmup", "1"]
    few = ["--windows", "100", "--repeats", "1"] if args.quick else []
    rc = 0
    if args.device != "cuda":
        units = pb.bf16_units()
        print(f"# bfloat16 matrix units: {units or 'none (bf16 training left out)'}\n")
        precision = "fp32,bf16" if units else "fp32"
        rc |= _part(train_throughput.main, ["--precision", precision, *steps, *threads, *ref])
        rc |= _part(inference.main, [*threads, *few, *ref])
        rc |= _part(scaling.main, threads)
        rc |= _part(pipeline.main, ["--steps", "15" if args.quick else "30", *threads])
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        print("# GPU figures\n")
        # Two warm-up steps: the first CUDA steps also pay cuBLAS's and the allocator's setup.
        gpu_steps = ["--steps", "3" if args.quick else "10", "--warmup", "2"]
        rc |= _part(train_throughput.main, ["--device", "cuda", "--precision", "fp32,bf16", *gpu_steps,
                                            "--configs", GPU_CONFIGS, *ref])
        rc |= _part(inference.main, ["--device", "cuda", "--no-compile", *few, *ref])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
