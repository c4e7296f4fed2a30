"""Dropout with cheap random masks.

POYO drops 20 % of every attention probability during training: about a million random
draws per window. PyTorch's CPU ``bernoulli_`` (behind ``nn.Dropout`` and the attention
kernels' dropout) spends ~20-30 ns per draw, a fifth of a whole training step. Here one 64-bit
random word yields four 16-bit lanes, each compared with a threshold.

On CPU the words come from numpy's PCG64, seeded by one draw of torch's global generator per
mask, so masks still follow ``torch.manual_seed``: 3.6 ms per million words against 9.1 ms
for torch's own Mersenne twister (``random_`` over the int64 range), which was ~11 % of a
training step (BENCHMARKS.md, issue 6). On other devices torch's ``random_`` is already fast
and stays.

The drop probability is rounded to a multiple of 1/65536 (0.2 becomes 0.199997) and kept
values are scaled by 1 / (1 - that), so the expectation of the output is exactly the input,
as with ``nn.Dropout``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _steps(p: float) -> int:
    return round(p * 65536)


def keep_probability(p: float) -> float:
    """The keep probability actually used for drop probability ``p``."""
    return 1.0 - _steps(p) / 65536


def random_lanes(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """At least ``n`` int16 values, each uniform on [-32768, 32767]: four lanes per 64-bit word."""
    words = -(-n // 4)
    if torch.device(device).type == "cpu":
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        return torch.from_numpy(np.random.PCG64(seed).random_raw(words).view(np.int64)).view(torch.int16)
    return torch.empty(words, dtype=torch.int64, device=device).random_(-(2**63), None).view(torch.int16)


def keep_threshold(p: float) -> int:
    """A lane of :func:`random_lanes` keeps its element when it is >= this."""
    return _steps(p) - 32768


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Mask of ``shape``: 1/True with probability ``keep_probability(p)``, else 0/False."""
    n = math.prod(shape)
    lanes = random_lanes(n, device)
    # The comparison writes straight into the requested dtype (no separate bool -> float pass).
    keep = torch.ge(lanes, keep_threshold(p), out=torch.empty(lanes.shape, dtype=dtype, device=device))
    return keep[:n].view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Like ``F.dropout(x, p, training)``, with :func:`keep_mask`."""
    if not training or p == 0.0:
        return x
    return x * (keep_mask(tuple(x.shape), p, x.device, x.dtype) * (1.0 / keep_probability(p)))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` with :func:`keep_mask`."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
