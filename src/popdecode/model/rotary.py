"""Rotary time embedding: attention that sees only *differences* of spike times.

Every token carries a time t (seconds since the window start). Instead of adding a time
vector to the token, rotary embedding turns pairs of a head's coordinates by angles w_j * t:

    (x[2j], x[2j+1])  ->  (x[2j] cos(w_j t) - x[2j+1] sin(w_j t),
                           x[2j+1] cos(w_j t) + x[2j] sin(w_j t))

A query rotated by t_q and a key rotated by t_k have a dot product that depends on t_q - t_k
only, so attention is time-shift invariant. POYO turns 16 interleaved pairs (the first 32
coordinates of a 64-wide head) with periods log-spaced from t_min = 1e-4 s to t_max = 2.0627 s
and leaves the other half of the head alone, so some features ignore time altogether.

"Rotate value" (encoder and processor): values are rotated by their key's time as well, and
the attention output by -t_query, so what a latent gathers is expressed relative to its own
time.

Angles reach w * t = 2 pi / 1e-4 s * 1 s, about 6e4 radians: bfloat16 would lose them
entirely, so the angles are formed in float64, cos and sin kept in float32 (as unit complex numbers), and
the rotation applied in float32, also under autocast; the result goes back to the input's
dtype. A pair (x[2j], x[2j+1]) is the complex number x[2j] + i x[2j+1]; turning it is one
complex multiplication by exp(i w_j t), a single vectorised pass.
"""

from __future__ import annotations

import math

import torch


def rotary_frequencies(*, num_frequencies: int, t_min: float, t_max: float) -> torch.Tensor:
    """Angular frequencies w_j = 2 pi / P_j, periods P_j log-spaced from t_min to t_max inclusive.

    Computed in float32 in exactly this order (linspace, lerp of logs, exp) so that the
    frequencies, and hence the angles of large times, agree bit for bit with the reference.
    """
    exponents = torch.linspace(0.0, 1.0, num_frequencies, dtype=torch.float32)
    log_min = torch.tensor(t_min, dtype=torch.float32).log()
    log_max = torch.tensor(t_max, dtype=torch.float32).log()
    periods = torch.exp(torch.lerp(log_min, log_max, exponents))
    return 2 * math.pi / periods


def rotary_phases(times: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Unit complex numbers exp(i * w_j * t), complex64, shape [..., F] for ``times`` [...].

    The angles are formed in float64: at w = 6e4 rad/s a float32 product would be off by up
    to 4e-3 rad, while float32 times are exact in float64 (the reference, fed float64 times
    by its tokenizer, does the same); cos and sin are then stored in float32. Compute these
    once per forward pass and share them across every layer that rotates by the same times
    (the latent grid's are a constant of the model). ``phases.conj()`` turns by -t.
    """
    return torch.complex(*rotary_cos_sin(times, omega))


def _turn(x: torch.Tensor, phases: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """The rotation itself, without autograd: pairs as complex numbers times ``phases``.

    The complex product is written straight into the result; with ``inplace`` (float32 ``x``
    of the broadcast shape) the result is ``x`` itself and the unrotated half is not copied.
    """
    f = phases.shape[-1]
    head, rest = x.split((2 * f, x.shape[-1] - 2 * f), dim=-1)
    head = head.float()
    if head.stride(-1) != 1 or any(s % 2 for s in head.stride()[:-1]) or head.storage_offset() % 2:
        head = head.contiguous()
    z = torch.view_as_complex(head.unflatten(-1, (f, 2)))
    shape = torch.broadcast_shapes(z.shape, phases.shape)
    if inplace and x.dtype == torch.float32 and tuple(x.shape[:-1]) == tuple(shape[:-1]) and z.data_ptr() == x.data_ptr():
        torch.mul(z, phases, out=z)
        return x
    out = torch.empty(*shape[:-1], x.shape[-1], dtype=x.dtype, device=x.device)
    if x.dtype == torch.float32:
        torch.mul(z, phases, out=torch.view_as_complex(out[..., : 2 * f].unflatten(-1, (f, 2))))
    else:
        out[..., : 2 * f] = torch.view_as_real(z * phases).flatten(-2)
    out[..., 2 * f :] = rest
    return out


class _Rotate(torch.autograd.Function):
    """rotate() with its backward written out: the gradient of a rotation by t is the
    rotation of the gradient by -t (summed over any axes the phases broadcast ``x`` along)."""

    @staticmethod
    def forward(ctx, x, phases, inplace):
        ctx.save_for_backward(phases)
        ctx.x_shape = x.shape
        out = _turn(x, phases, inplace=inplace)
        if out is x:
            ctx.mark_dirty(x)
        return out

    @staticmethod
    def backward(ctx, grad):
        (phases,) = ctx.saved_tensors
        g = _turn(grad, phases.conj())
        if g.shape != ctx.x_shape:
            g = g.sum_to_size(ctx.x_shape)
        return g, None, None


def rotate(x: torch.Tensor, phases: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Rotate the interleaved pairs of the first 2F coordinates of ``x``'s last axis.

    ``phases`` (complex64 [..., F], from :func:`rotary_phases`) must broadcast against
    ``x[..., :2F]`` viewed as F pairs; pass ``phases.conj()`` to rotate by -t. The other
    coordinates are copied unchanged. Returns a new tensor of ``x``'s dtype and of the
    broadcast shape (a weight [1, ...] rotated by T phases gives T rotated copies). The
    rotation runs in float32 whatever ``x``'s dtype. ``inplace`` lets a float32 ``x`` that
    nothing else needs (a fresh projection) be overwritten instead of copied.
    """
    return _Rotate.apply(x, phases, inplace)


def rotary_cos_sin(times: torch.Tensor, omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles w_j * t (float32 [..., F] each): :func:`rotary_phases` as two
    real tensors, for :func:`rotate_halves`. Angles in float64 (see there)."""
    with torch.autocast(device_type=times.device.type, enabled=False):
        angles = times.to(torch.float64)[..., None] * omega.to(torch.float64)
        return angles.cos().float(), angles.sin().float()


def rotary_cos_sin_reduced(times: torch.Tensor, omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotary_cos_sin` for compiled code: the float64 angles are reduced to one turn
    (|angle| <= pi) before cos and sin are taken in float32. Within 2.4e-7 of it; TorchInductor
    vectorises this, while its float64 cos and sin are scalar loops."""
    angles = times.to(torch.float64)[..., None] * omega.to(torch.float64)
    angles = (angles - torch.round(angles * (0.5 / math.pi)) * (2 * math.pi)).float()
    return angles.cos(), angles.sin()


def halves_permutation(dim_head: int) -> torch.Tensor:
    """Feature order of a head with its rotary pairs split into halves: (x0, x2, ..., x_{2F-2},
    x1, x3, ..., x_{2F-1}, then the unrotated rest). Applying it to the output features of
    both the query and the key projections leaves every q.k unchanged, and to the values and
    the input features of the output projection leaves the attention output unchanged; in
    this order a rotation reads and writes contiguous blocks (:func:`rotate_halves`)."""
    f = dim_head // 4
    return torch.cat([torch.arange(0, 2 * f, 2), torch.arange(1, 2 * f, 2), torch.arange(2 * f, dim_head)])


def rotate_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`rotate` with real arithmetic, on heads in :func:`halves_permutation` order:
    pair j is (x[j], x[F + j]). ``cos``/``sin`` from :func:`rotary_cos_sin` broadcast against
    ``x[..., :F]``; pass ``-sin`` to turn by -t. Elementwise operations on contiguous blocks
    only, so TorchInductor compiles it into one vectorised pass (it cannot compile the
    complex-number views of :func:`rotate`)."""
    f = cos.shape[-1]
    a, b, rest = x.split((f, f, x.shape[-1] - 2 * f), dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin, rest), dim=-1)
