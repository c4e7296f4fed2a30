"""The feed-forward block of every POYO layer: LayerNorm, then a GEGLU MLP.

    x -> LN -> Linear(dim, 2 * mult * dim) -> split into (a, gate) -> a * gelu(gate)
      -> Dropout -> Linear(mult * dim, dim)

GEGLU ("GLU Variants Improve Transformer", Shazeer 2020) lets half of the hidden units gate
the other half; with mult = 4 the hidden layer is 8 * dim wide before gating and 4 * dim
after. The residual addition happens in the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from popdecode.model.dropout import Dropout


class FeedForward(nn.Module):
    def __init__(self, *, dim: int, mult: int = 4, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 2 * mult * dim)
        self.dropout = Dropout(dropout)
        self.down = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.up(self.norm(x)).chunk(2, dim=-1)
        return self.down(self.dropout(a * F.gelu(gate)))
