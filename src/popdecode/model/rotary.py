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
entirely, so the angles are formed in float64, cos and sin kept in float32, and the rotation
applied in float32, also under autocast; the result goes back to the input's dtype.
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


def rotary_cos_sin(times: torch.Tensor, omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles ``times[..., None] * omega``, float32, shape [..., F].

    The angles themselves are formed in float64: at w = 6e4 rad/s a float32 product would be
    off by up to 4e-3 rad, while the float32 times are exact in float64 (the reference, fed
    float64 times by its tokenizer, does the same). Compute these once per forward pass and
    share them across every layer that rotates by the same times (the latent grid's are a
    constant of the model).
    """
    with torch.autocast(device_type=times.device.type, enabled=False):
        angles = times.to(torch.float64)[..., None] * omega.to(torch.float64)
        return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the interleaved pairs of the first 2F coordinates of ``x``'s last axis.

    ``cos`` and ``sin`` ([..., F], float32) must broadcast against ``x[..., :2F]`` viewed as
    [..., F, 2] without its last axis; pass ``-sin`` to rotate by -t. The other coordinates
    are copied unchanged. Returns a new tensor of ``x``'s shape and dtype.
    """
    f = cos.shape[-1]
    pairs = x[..., : 2 * f].float().unflatten(-1, (f, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    turned = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    return torch.cat((turned.flatten(-2).to(x.dtype), x[..., 2 * f :]), dim=-1)
