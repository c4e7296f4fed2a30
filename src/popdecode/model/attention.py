"""Rotary attention for POYO's three attention layers, with the latent side's rotations folded
into the weights.

Every layer normalises its inputs (pre-LN), projects them to heads of width ``dim_head``,
rotates queries and keys by their times (:mod:`popdecode.model.rotary`), attends, optionally
turns the output back by -t_query ("rotate value"), and projects back to ``dim``. Projections
to q, k, v have no bias; the output projection has one. The parameter names (``norm``,
``norm_context``, ``to_q``, ``to_kv``, ``to_qkv``, ``to_out``) follow the reference, so that
weights convert one to one.

**Folding rotations into weights.** Rotating a projected vector is linear:
R(t) (W x) = (R(t) W) x. The latents sit at only T = 8 time points, the same in every window,
so instead of rotating B x 128 projected latents per layer we rotate the projection weights
once per time point (8 small matrices) and project each time point's latents with its own
matrix, one batched matmul [T, B * P, dim] @ [T, dim, out]. The output's back-rotation folds
into ``to_out`` the same way: W_out R(-t) o has the rows of W_out turned by R(t). Spike
tokens and output queries have arbitrary times, so they are rotated as activations. For this
the latents live on a grid [T, B, P, dim] (time point, window, latent within the time point)
instead of [B, T * P, dim]: per-token layers do not care, and attention regroups them per window.

**Attention.** Without dropout (evaluation) attention is PyTorch's fused
``scaled_dot_product_attention``. With dropout (training) it is written out, because PyTorch's
CPU kernels draw their dropout masks with the slow ``bernoulli_``; the mask here comes from
:func:`popdecode.model.dropout.keep_mask`, and the 1 / keep rescaling is applied to the values,
which are smaller than the attention matrix. Queries arrive already scaled by dim_head^-0.5
(folded into their weights where possible).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from popdecode.model.dropout import keep_mask, keep_probability
from popdecode.model.packing import Packing
from popdecode.model.rotary import rotate

Rot = torch.Tensor  # unit complex phases exp(i w t), complex64, [..., F]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float) -> torch.Tensor:
    """softmax(q k^T) v over the last two axes; q pre-scaled. [..., Lq, Dh] x [..., Lk, Dh].

    With dropout the kept probabilities are NOT rescaled here: the caller folds the
    1 / keep factor (:func:`out_scale`) into its output projection, a much smaller tensor.
    """
    if dropout_p == 0.0:
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)
    scores = q @ k.transpose(-1, -2)
    probs = torch.softmax(scores, dim=-1)
    probs = probs * keep_mask(tuple(probs.shape), dropout_p, probs.device, probs.dtype)
    return probs @ v


def out_scale(dropout_p: float) -> float:
    """The dropout rescaling that :func:`attend` leaves to the output projection."""
    return 1.0 / keep_probability(dropout_p) if dropout_p > 0.0 else 1.0


def _folded(module: nn.Module, name: str, sources: tuple[torch.Tensor, ...], extra: tuple, make):
    """Weights with rotations (and scales) folded in, cached while no gradient is recorded.

    In training the folding is part of the graph (the weights need gradients) and runs every
    step; at inference (``torch.no_grad``/``inference_mode``) the result depends only on the
    weights, so it is kept until a weight changes (tracked by its version counter), and a
    streaming decoder pays for it once.
    """
    if torch.is_grad_enabled() or any(w.is_inference() for w in sources):
        return make()
    key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in sources) + extra
    cache = module.__dict__.setdefault("_fold_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        hit = cache[name] = (key, make())
    return hit[1]


def _grid_to_windows(x: torch.Tensor, t: int, b: int, p: int, h: int, dh: int) -> torch.Tensor:
    """[T, B * P, H * Dh] projections -> [B, H, T * P, Dh] per-window heads (one copy)."""
    return x.view(t, b, p, h, dh).permute(1, 3, 0, 2, 4).reshape(b, h, t * p, dh)


def _windows_to_grid(x: torch.Tensor, t: int, p: int) -> torch.Tensor:
    """[B, H, T * P, Dh] attention output -> [T, B * P, H * Dh]."""
    b, h, _, dh = x.shape
    return x.view(b, h, t, p, dh).permute(2, 0, 3, 1, 4).reshape(t, b * p, h * dh)


def _out_per_time(to_out: nn.Linear, heads: int, dh: int, rot: Rot | None, t: int, scale: float) -> torch.Tensor:
    """``scale`` x to_out's weight as [T, H * Dh, dim], turned back by -t of each time point if ``rot``."""
    w = to_out.weight.view(1, -1, heads, dh)  # [1, dim, H, Dh]
    if scale != 1.0:
        w = w * scale
    if rot is not None:
        w = rotate(w, rot[:, None, None, :])  # rows turned by R(t)
    else:
        w = w.expand(t, -1, -1, -1)
    return w.reshape(t, -1, heads * dh).transpose(1, 2)


class RotarySelfAttention(nn.Module):
    """Processor layer: the latents of each window attend to each other (rotate value on).

    q, k and v are three separate projections rather than one split: the gradient of a split
    would be stacked back together, a full copy of all three per layer.
    """

    def __init__(self, *, dim: int, heads: int, dim_head: int, dropout: float, rotate_value: bool):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: torch.Tensor, step_rot: Rot) -> torch.Tensor:
        """x: latent grid [T, B, P, dim]; step_rot: phases of the T time points, [T, F]."""
        t, b, p, d = x.shape
        h, dh = self.heads, self.dim_head
        p_drop = self.dropout if self.training else 0.0

        def fold():
            phases = step_rot[:, None, None, :]
            wq, wk, wv = self.to_qkv.weight.t().view(1, d, 3, h, dh).unbind(2)  # each [1, dim, H, Dh]
            wq = rotate(wq * dh**-0.5, phases)  # [T, dim, H, Dh], attention scale folded in
            wk = rotate(wk, phases)
            wv = rotate(wv, phases) if self.rotate_value else wv.expand(t, -1, -1, -1)
            wo = _out_per_time(self.to_out, h, dh, step_rot if self.rotate_value else None, t, out_scale(p_drop))
            return [w.reshape(t, d, h * dh) for w in (wq, wk, wv)] + [wo]

        *wqkv, wo = _folded(self, "qkv", (self.to_qkv.weight, self.to_out.weight, step_rot), (p_drop,), fold)
        hx = self.norm(x).view(t, b * p, d)
        q, k, v = (_grid_to_windows(torch.bmm(hx, w), t, b, p, h, dh) for w in wqkv)
        out = attend(q, k, v, dropout_p=p_drop)
        return torch.baddbmm(self.to_out.bias, _windows_to_grid(out, t, p), wo).view(t, b, p, d)


class _CrossAttention(nn.Module):
    """Weights of a rotary cross-attention layer (queries attend to a context)."""

    def __init__(self, *, dim: int, heads: int, dim_head: int, dropout: float, rotate_value: bool):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)


class RotaryEncoderAttention(_CrossAttention):
    """Encoder: the latents (the same vectors in every window) attend to each window's spike
    tokens, rotate value on. The queries are computed once for all windows.

    A token is ``unit_vocab[u] + token_type_emb[type]``, so its key and value before rotation
    depend on (u, type) alone: the layer normalises and projects only the batch's *distinct*
    token vectors (``context``, ~1k rows against ~35k tokens in a batch of 32 windows) and
    gathers each token's key and value from those tables, already in the per-head layout
    attention reads, then rotates them by the token's time.

    Attention runs window by window on the packed tokens: no padding and no mask. (Groups of
    similar-length windows padded to a common length were 10-13 % slower per training step
    on CPU, BENCHMARKS.md.)
    """

    def forward(self, latents: torch.Tensor, latent_rot: Rot, step_rot: Rot, context: torch.Tensor,
                token_context: torch.Tensor, token_rot: Rot, lengths: list[int]) -> torch.Tensor:
        """latents [P, dim] (the learned vectors, repeated at each of the T time points);
        latent_rot [T * P, F]; step_rot [T, F] (phases); context [U, dim], the distinct token
        vectors; token_context int64 [N], each packed token's row of ``context``, with
        per-window ``lengths``; token_rot [N, F]. Returns [T, B, P, dim]."""
        h, dh, t = self.heads, self.dim_head, step_rot.shape[0]
        n_lat = t * latents.shape[0]

        def queries():
            x = latents.repeat(t, 1)  # [T * P, dim], time point-major
            q = self.to_q(self.norm(x)).view(n_lat, h, dh) * dh**-0.5
            return rotate(q, latent_rot[:, None, :]).transpose(0, 1)[None]  # [1, H, L, Dh]

        sources = (latents, self.to_q.weight, self.norm.weight, self.norm.bias, latent_rot)
        q = _folded(self, "q", sources, (), queries)  # the latents' queries are a function of weights only
        ctx = self.norm_context(context)
        wk, wv = self.to_kv.weight.view(2, h * dh, -1).unbind(0)
        phases = token_rot[None]
        # [H, U, Dh] tables -> [H, N, Dh] per token; the gathered tensors are fresh, so the
        # rotation by each token's time runs in place.
        k_table, v_table = (F.linear(ctx, w).view(-1, h, dh).transpose(0, 1).contiguous() for w in (wk, wv))
        k = rotate(k_table.index_select(1, token_context), phases, inplace=True)
        v = v_table.index_select(1, token_context)
        if self.rotate_value:
            v = rotate(v, phases, inplace=True)
        p_drop = self.dropout if self.training else 0.0
        # 4-D operands: PyTorch's fused CPU attention takes only [batch, heads, L, Dh]; 3-D
        # ones fall back to the unfused math path (3x slower for one window's ~1k keys).
        out = torch.cat([
            attend(q, kw[None], vw[None], dropout_p=p_drop)
            for kw, vw in zip(k.split(lengths, dim=1), v.split(lengths, dim=1))
        ])  # [B, H, L, Dh]
        wo = _folded(self, "out", (self.to_out.weight, step_rot), (p_drop,), lambda: _out_per_time(
            self.to_out, h, dh, step_rot if self.rotate_value else None, t, out_scale(p_drop)))
        y = torch.baddbmm(self.to_out.bias, _windows_to_grid(out, t, n_lat // t), wo)
        return y.view(t, len(lengths), n_lat // t, -1)


class RotaryDecoderAttention(_CrossAttention):
    """Decoder: each output query (its window's session vector, at its own time) attends to its
    window's latents, rotate value off. Keys come from the latent grid with the rotation folded
    into the weights; queries are rotated as activations and padded per window."""

    def __init__(self, *, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__(dim=dim, heads=heads, dim_head=dim_head, dropout=dropout, rotate_value=False)

    def forward(self, session: torch.Tensor, latents: torch.Tensor, step_rot: Rot,
                query_rot: Rot, queries: Packing) -> torch.Tensor:
        """session [B, dim]; latents [T, B, P, dim]; step_rot [T, F]; query_rot [M, F] packed;
        ``queries`` the packing of the M queries. Returns [M, dim]."""
        t, b, p, d = latents.shape
        h, dh = self.heads, self.dim_head
        q = self.to_q(self.norm(session)).view(b, h, dh) * dh**-0.5
        q = rotate(q[queries.window], query_rot[:, None, :])  # [M, H, Dh]
        q = queries.pad(q).transpose(1, 2)  # [B, H, Mmax, Dh]
        def fold():
            wk, wv = self.to_kv.weight.t().view(1, d, 2, h, dh).unbind(2)
            wk = rotate(wk, step_rot[:, None, None, :])  # [T, dim, H, Dh]
            return wk.reshape(t, d, h * dh), wv.reshape(d, h * dh)

        wk, wv = _folded(self, "kv", (self.to_kv.weight, step_rot), (), fold)
        ctx = self.norm_context(latents).view(t, b * p, d)
        k = _grid_to_windows(torch.bmm(ctx, wk), t, b, p, h, dh)
        v = _grid_to_windows(torch.matmul(ctx, wv), t, b, p, h, dh)
        p_drop = self.dropout if self.training else 0.0
        out = attend(q, k, v, dropout_p=p_drop)  # [B, H, Mmax, Dh]
        out = queries.unpad(out.transpose(1, 2))  # [M, H, Dh]
        weight = self.to_out.weight * out_scale(p_drop) if p_drop else self.to_out.weight
        return F.linear(out.reshape(out.shape[0], h * dh), weight, self.to_out.bias)
