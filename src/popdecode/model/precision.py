"""Which parts of the network bf16 autocast covers on CPU.

On CPU, bfloat16 matrix products go through oneDNN, which builds a kernel for each new
matrix shape and caches it: ~1.1 ms to build, against ~0.2 ms for the product of one
window's encoder attention itself (BENCHMARKS.md, issue 6). The encoder's per-window
attention and its table of distinct tokens, and the decoder and readouts, have shapes set by
the batch's spike, unit and query counts, new in nearly every batch; under CPU autocast they
therefore run in float32, where the BLAS kernels serve any shape. The processor, whose
shapes are fixed by the batch size alone and which holds most of the model's arithmetic,
stays in bfloat16. (Measured on poyo-1.3M, batch 32: 1.2 s -> 0.77 s per bf16 training
step.) Other devices' autocast is left as it is.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


def _cpu_autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def float32_where_shapes_vary(x: torch.Tensor):
    """Context for a block with batch-dependent shapes on ``x``'s device: autocast off when
    ``x`` is on a CPU under autocast (callers pass float32 inputs), otherwise nothing."""
    if x.device.type == "cpu" and _cpu_autocast_on():
        return torch.autocast("cpu", enabled=False)
    return nullcontext()
