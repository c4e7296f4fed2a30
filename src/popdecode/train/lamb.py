"""LAMB, the optimiser POYO trains with, and the "sparse rows" rule for embedding tables.

LAMB (You et al., 2019, "Large batch optimization for deep learning") is Adam with a
per-tensor step size. For every parameter tensor ``w`` with gradient ``g``:

    m <- beta1 * m + (1 - beta1) * g                 first moment
    v <- beta2 * v + (1 - beta2) * g^2               second moment
    u  = m / (sqrt(v) + eps) + weight_decay * w      Adam direction plus decoupled decay
    r  = min(|w|, clamp) / |u|                       trust ratio (1 if either norm is 0)
    w <- w - lr * r * u

so every tensor moves by ``lr * min(|w|, clamp)`` in norm, whatever the scale of its
gradient: large batches (and large learning rates) stay stable. There is no bias correction
of the moments (the LAMB paper's v3 drops it, and POYO's recipe follows), and no gradient
clipping (spec section 5).

Sparse rows. The unit and session embedding tables have one row per unit / session ever
seen, but a batch touches only the rows of the sessions in it. A row that received no
gradient in a step must not move at all: no moment update, no weight decay, nothing. Mark
such tables with the parameter-group flag ``sparse_rows=True``; a row counts as touched when
any entry of its gradient is non-zero. In those groups the trust ratio is computed over the
touched rows only (the part of the tensor that moves), so a row's update does not depend on
how many other sessions' rows sit in the same table; for a dense group (or when every row is
touched) this is exactly the formula above. This rule is also what adaptation relies on:
zero the gradient of the rows that must stay frozen and they stay bit-for-bit the same.

:func:`build_optimizer` makes either this optimiser or ``torch.optim.AdamW`` from the same
parameter groups; for AdamW the untouched rows are restored after each step (weights and
moments), so the sparse-rows rule holds for both.
"""

from __future__ import annotations

from typing import Iterable

import torch


def touched_rows(grad: torch.Tensor) -> torch.Tensor:
    """Boolean [rows]: which rows of a table received a non-zero gradient."""
    return grad.reshape(grad.shape[0], -1).ne(0).any(dim=1)


class Lamb(torch.optim.Optimizer):
    """LAMB with decoupled weight decay, trust-ratio clamp, and optional sparse-row groups.

    Parameter groups may set ``sparse_rows=True`` (default False): see the module docstring.
    The defaults are POYO's recipe (spec section 5).
    """

    def __init__(
        self,
        params: Iterable,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 1e-4,
        clamp: float = 10.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or clamp <= 0:
            raise ValueError("lr, eps and weight_decay must be >= 0 and clamp > 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError("betas must lie in [0, 1)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        clamp=clamp, sparse_rows=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("Lamb takes dense gradients (use sparse_rows for embedding tables)")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]

                rows = None
                if group["sparse_rows"] and p.dim() >= 1:
                    rows = touched_rows(g)
                    if bool(rows.all()):
                        rows = None  # every row touched: the dense path is the same and faster
                    elif not bool(rows.any()):
                        continue  # nothing touched: the whole table stays as it is

                if rows is None:
                    w, gg, mm, vv = p, g, m, v
                else:
                    # Work on copies of the touched rows, then write them back: the other rows
                    # (weights and moments) are never written to.
                    w, gg, mm, vv = p[rows], g[rows], m[rows], v[rows]

                mm.mul_(beta1).add_(gg, alpha=1 - beta1)
                vv.mul_(beta2).addcmul_(gg, gg, value=1 - beta2)
                update = mm / (vv.sqrt() + group["eps"])
                if group["weight_decay"] != 0:
                    update.add_(w, alpha=group["weight_decay"])

                w_norm = torch.linalg.vector_norm(w).clamp(max=group["clamp"])
                u_norm = torch.linalg.vector_norm(update)
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                new_w = w - (group["lr"] * ratio) * update

                if rows is None:
                    p.copy_(new_w)
                else:
                    p[rows] = new_w
                    m[rows] = mm
                    v[rows] = vv
        return loss


class RowPreservingAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that also honours ``sparse_rows`` groups.

    AdamW itself would decay every row and advance every row's moments; here the rows with
    no gradient are copied before the step and put back after it (weights and moments), so
    they end bit-for-bit unchanged, as with :class:`Lamb`.
    """

    def __init__(self, params, **kwargs):
        # foreach/fused kernels would be fine too; the plain loop keeps results reproducible
        # across machines, and the tables are small next to the rest of the step.
        super().__init__(params, **kwargs)
        for g in self.param_groups:
            g.setdefault("sparse_rows", False)

    @torch.no_grad()
    def step(self, closure=None):
        saved = []
        for group in self.param_groups:
            if not group.get("sparse_rows"):
                continue
            for p in group["params"]:
                if p.grad is None or p.dim() == 0:
                    continue
                keep = ~touched_rows(p.grad)
                if not bool(keep.any()):
                    continue
                state = self.state.get(p, {})
                moments = {k: state[k][keep].clone() for k in ("exp_avg", "exp_avg_sq") if k in state}
                saved.append((p, keep, p[keep].clone(), moments))
        loss = super().step(closure)
        for p, keep, old, moments in saved:
            p[keep] = old
            state = self.state[p]
            for k in ("exp_avg", "exp_avg_sq"):
                if k in moments:
                    state[k][keep] = moments[k]
                else:
                    state[k][keep] = 0  # first step: these rows have no history yet
        return loss


def build_optimizer(
    groups: list[dict],
    *,
    name: str = "lamb",
    lr: float,
    weight_decay: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> torch.optim.Optimizer:
    """LAMB (``name="lamb"``) or AdamW (``"adamw"``) over parameter groups.

    ``groups`` are dicts ``{"params": [...], "sparse_rows": bool}``; empty groups are dropped.
    """
    groups = [g for g in groups if len(g["params"])]
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        return RowPreservingAdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                  foreach=False)
    raise ValueError(f"unknown optimizer {name!r} (choose lamb or adamw)")
