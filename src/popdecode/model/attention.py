"""Rotary cross- and self-attention, on top of PyTorch's scaled_dot_product_attention.

Both layers normalise their inputs (pre-LN), project to heads of width ``dim_head``, rotate
queries and keys by their times (see :mod:`popdecode.model.rotary`), attend, optionally undo
the rotation of the output ("rotate value"), and project back to ``dim``. Projections to
q, k, v have no bias; the output projection has one. Tensors keep the layout
[batch, length, heads, dim_head] until attention itself, which wants heads before length.

Rotary angles arrive as precomputed (cos, sin) pairs so that one forward pass computes them
once for all layers. Shapes: the last axis is F (rotated pairs); the axes before it broadcast
against [batch, length] (a pair of shape [length, F] serves every window alike).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from popdecode.model.packing import Packing
from popdecode.model.rotary import rotate

Rot = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), float32, [..., length, F]


def _heads(rot: Rot) -> Rot:
    """Insert the heads axis (and, for q/k/v stacks, nothing else) before F."""
    return rot[0].unsqueeze(-2), rot[1].unsqueeze(-2)


def _attend(q, k, v, mask, dropout_p):
    """softmax(q k^T / sqrt(d)) v with q, k, v in [B, L, H, Dh]; mask [B, Lk] (True = key kept)."""
    if mask is not None:
        mask = mask[:, None, None, :]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout_p
    )
    return out.transpose(1, 2)  # [B, Lq, H, Dh]


class RotarySelfAttention(nn.Module):
    """Latents attend to latents: ``x -> to_out(attn(rot(q), rot(k), rot?(v)))``, pre-LN."""

    def __init__(self, *, dim: int, heads: int, dim_head: int, dropout: float, rotate_value: bool):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: torch.Tensor, rot: Rot) -> torch.Tensor:
        """x [B, L, dim]; rot: (cos, sin) broadcasting to [B, L, F]. Returns [B, L, dim]."""
        b, n, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).view(b, n, 3, self.heads, self.dim_head)
        cos, sin = rot[0][..., None, None, :], rot[1][..., None, None, :]  # [.., L, 1, 1, F]
        if self.rotate_value:
            # q, k and v all turn by the same latent times: one rotation for the three.
            q, k, v = rotate(qkv, cos, sin).unbind(2)
        else:
            q, k = rotate(qkv[:, :, :2], cos, sin).unbind(2)
            v = qkv[:, :, 2]
        out = _attend(q, k, v, None, self.dropout if self.training else 0.0)
        if self.rotate_value:
            out = rotate(out, *_heads((rot[0], -rot[1])))
        return self.to_out(out.reshape(b, n, -1))


class RotaryCrossAttention(nn.Module):
    """Queries attend to a context: the encoder (latents <- spikes) and decoder (queries <- latents).

    The context comes either dense ([B, Lk, dim]) or packed ([N, dim] with a :class:`Packing`
    saying which rows belong to which window). Packed context is normalised, projected and
    rotated without any padding; only the projected keys and values are laid out per window
    for attention, with padded keys masked out.
    """

    def __init__(self, *, dim: int, heads: int, dim_head: int, dropout: float, rotate_value: bool):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        rot: Rot,
        context_rot: Rot,
        context_packing: Packing | None = None,
    ) -> torch.Tensor:
        """Attend from queries ``x`` to ``context``.

        x:          [B or 1, Lq, dim]; a leading 1 means the same queries for every window
                    (the latents at the encoder, the session query at the decoder) and is
                    projected once.
        rot:        (cos, sin) of the query times, broadcasting to [B, Lq, F].
        context:    [B, Lk, dim] dense, or [N, dim] packed when ``context_packing`` is given.
        context_rot:(cos, sin) of the context times, [.., Lk, F] dense or [N, F] packed.
        Returns [B, Lq, dim].
        """
        h, dh = self.heads, self.dim_head
        kv = self.to_kv(self.norm_context(context))
        kv = kv.view(*kv.shape[:-1], 2, h, dh)
        cos, sin = context_rot[0][..., None, None, :], context_rot[1][..., None, None, :]
        if self.rotate_value:
            kv = rotate(kv, cos, sin)
        else:
            kv = torch.stack((rotate(kv[..., 0, :, :], *_heads(context_rot)), kv[..., 1, :, :]), dim=-3)
        mask = None
        if context_packing is not None:
            kv = context_packing.pad(kv)  # [B, Lmax, 2, H, Dh]
            mask = context_packing.mask if context_packing.needs_mask else None
        k, v = kv.unbind(2)

        b, lq = k.shape[0], rot[0].shape[-2]
        q = self.to_q(self.norm(x))
        q = q.view(q.shape[0], q.shape[1], h, dh).expand(b, lq, h, dh)
        q = rotate(q, *_heads(rot))

        out = _attend(q, k, v, mask, self.dropout if self.training else 0.0)
        if self.rotate_value:
            out = rotate(out, *_heads((rot[0], -rot[1])))
        return self.to_out(out.reshape(b, lq, -1))
