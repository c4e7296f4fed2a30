"""Packed sequences: many windows' rows concatenated, and the per-window layout attention needs.

A batch stores the tokens of B windows one after the other ([N, ...] with per-window
``lengths``). Everything that treats tokens one at a time (embeddings, LayerNorm, linear
projections, rotary) runs on that packed form: no work is spent on padding. Only attention
needs rows grouped by window; :meth:`Packing.pad` lays them out as [B, Lmax, ...] (zeros
beyond each window's length, masked out of the keys) and :meth:`Packing.unpad` returns to
the packed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packing:
    """Where each of N packed rows sits in a [B, max_length] grid."""

    lengths: torch.Tensor  # int64 [B]
    max_length: int
    index: torch.Tensor  # int64 [N], row of the flattened [B * max_length] grid
    window: torch.Tensor  # int64 [N], window of each packed row
    mask: torch.Tensor  # bool [B, max_length], True where a real row sits

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> "Packing":
        lengths = lengths.to(torch.int64)
        b = lengths.numel()
        max_length = int(lengths.max()) if b else 0
        window = torch.repeat_interleave(torch.arange(b, device=lengths.device), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(window.numel(), device=lengths.device) - starts[window]
        mask = torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]
        return cls(lengths, max_length, window * max_length + within, window, mask)

    @property
    def size(self) -> int:
        return int(self.lengths.numel())

    @property
    def needs_mask(self) -> bool:
        """False when every window has the same length (the grid is full; nothing to mask)."""
        return self.index.numel() != self.size * self.max_length

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> [B, max_length, ...], zeros where a window has no row."""
        if not self.needs_mask:
            return x.reshape(self.size, self.max_length, *x.shape[1:])
        grid = x.new_zeros(self.size * self.max_length, *x.shape[1:])
        grid = grid.index_copy(0, self.index, x)
        return grid.view(self.size, self.max_length, *x.shape[1:])

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """[B, max_length, ...] -> [N, ...], keeping the real rows in packed order."""
        flat = x.reshape(self.size * self.max_length, *x.shape[2:])
        if not self.needs_mask:
            return flat
        return flat.index_select(0, self.index)
