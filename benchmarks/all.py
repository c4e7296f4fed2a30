"""Every speed figure of issue 6 in one command: each benchmark prints its own table.

    POPDECODE_PROGRESS=0 python benchmarks/all.py            # ~15-25 min on 2 cores
    POPDECODE_PROGRESS=0 python benchmarks/all.py --quick    # fewer steps and windows

1. training throughput, both presets, against torch-brain; bf16 too where the CPU has
   bfloat16 matrix units (AMX or AVX512-BF16) or a GPU is present (train_throughput.py);
2. batch-1 latency (median, p99) and batch-256 windows/s (inference.py);
3. time and memory per window against tokens per window (scaling.py);
4. the data pipeline's share of a training step (pipeline.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference  # noqa: E402
import pipeline  # noqa: E402
import poyo_bench as pb  # noqa: E402
import scaling  # noqa: E402
import train_throughput  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and windows (noisier figures)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    args = p.parse_args(argv)
    threads = ["--threads", str(args.threads)]
    units = pb.bf16_units()
    print(f"# bfloat16 matrix units: {units or 'none (bf16 training left out)'}\n")
    precision = "fp32,bf16" if units else "fp32"
    steps = ["--steps", "3", "--warmup", "1"] if args.quick else ["--steps", "6", "--warmup", "1"]
    rc = train_throughput.main(["--precision", precision, *steps, *threads])
    print()
    rc |= inference.main([*threads, *(["--windows", "100", "--repeats", "1"] if args.quick else [])])
    print()
    rc |= scaling.main(threads)
    print()
    rc |= pipeline.main(["--steps", "15" if args.quick else "30", *threads])
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
