"""Compiled training of the processor: the latent self-attention layers through TorchInductor.

The processor holds most of a training step (measured, 1 thread: 67 % of a poyo-1.3M step at
batch 32, 88 % of a poyo-11.8M step at batch 8), and its shapes never depend on the number
of spikes: 128 (or 256) latents per window whatever the window holds. So it compiles once
per batch size, while the encoder (packed tokens of a different count every step) and the
decoder stay eager.

Eagerly, each layer's time outside the matrix products goes to the attention dropout (a mask
over the 128 x 128 probabilities, multiplied in forward and backward), softmax, layout copies
between the projections and the per-window heads, layer norms, GELU and the residual
dropouts. The hope was that fused loops would make these cheaper. **Measured on the
project's 2-core VM they do not**: the compiled step runs at 0.84-0.89x of the eager one,
because the generated softmax/dropout loops on the [B, H, L, L] probabilities are slower
than PyTorch's kernels there (BENCHMARKS.md, "Compiled training of the processor"). Hence
opt in only (``POYO.compile_for_training``, ``popdecode train --compile``).

:func:`processor_layer` computes exactly the function of
:class:`~popdecode.model.poyo.ProcessorLayer`, written for the compiler:

* latents are window-major [B, L, dim] (latent l = time point x P + row, as the eager
  layer's per-window heads), so one projection serves every latent and attention needs
  only a permutation, which the compiler fuses into the rotation;
* rotations are real cos/sin arithmetic (:func:`~popdecode.model.rotary.rotate_halves`) on
  heads reordered into halves (the weights are reordered inside the graph), applied to the
  projected q, k, v and to the attention output; the eager layer folds them into 8 rotated
  copies of the weights instead (a rotation is linear, so both agree). TorchInductor cannot
  trace the complex-number views of :func:`~popdecode.model.rotary.rotate`;
* dropout masks come from :mod:`popdecode.model.dropout`'s generator, drawn eagerly as bool
  masks (:func:`keep_masks`) and applied with the same 1 / keep rescaling inside the graph:
  the same distribution as the eager layers, not the same masks for the same seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from popdecode.model.dropout import keep_probability, keep_threshold, random_lanes
from popdecode.model.rotary import halves_permutation, rotate_halves


def _drop(x: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """Dropout of x with a keep mask drawn eagerly (:func:`keep_masks`), applied and rescaled
    inside the loop that produces x."""
    if keep is None:
        return x
    return torch.where(keep.view(x.shape), x * (1.0 / keep_probability(p)), 0.0)


def keep_masks(sizes: list[int], probs: list[float], device: torch.device) -> torch.Tensor:
    """Keep masks of :mod:`popdecode.model.dropout` (bool, True with probability
    ``keep_probability(p)``) for segments of ``sizes`` elements, one drop probability each,
    concatenated; from one draw of PyTorch's generator (reproducible under torch.manual_seed).

    Drawn eagerly because TorchInductor's own CPU generator cost ~40 ns per element (7x the
    rest of a layer), and compared eagerly because its comparisons of int16 lanes compile
    to scalar loops; bool masks load vectorised."""
    lanes = random_lanes(sum(sizes), device)
    keep = torch.empty(sum(sizes), dtype=torch.bool, device=device)
    start = 0
    for n, p in zip(sizes, probs):
        torch.ge(lanes[start : start + n], keep_threshold(p), out=keep[start : start + n])
        start += n
    return keep


def noise_sizes(*, batch: int, latents: int, dim: int, heads: int, mult: int = 4) -> list[int]:
    """Elements of one layer's dropout masks: attention probabilities, the attention residual,
    the GEGLU hidden layer, the feed-forward residual (in :func:`processor_layer`'s order)."""
    return [batch * heads * latents * latents, batch * latents * dim, batch * latents * mult * dim, batch * latents * dim]


def processor_layer(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, weights: list[torch.Tensor],
                    keep: torch.Tensor | None, *, heads: int, p_attn: float, p_lin: float,
                    p_ffn: float) -> torch.Tensor:
    """One processor layer on window-major latents x [B, L, dim]; cos/sin [L, F] of each
    latent's time; ``weights`` from :func:`layer_weights`; ``keep``: the dropouts' masks
    (:func:`keep_masks` of :func:`noise_sizes`), or None without dropout."""
    ln_w, ln_b, wqkv, wo, bo, f_ln_w, f_ln_b, up_w, up_b, down_w, down_b = weights
    b, n, d = x.shape
    dh = wqkv.shape[0] // (3 * heads)
    # Heads in halves order, so that rotations read and write contiguous blocks (interleaved
    # pairs compiled to scalar loops 4x slower); a gather of the small weights, undone by
    # the same order on the output projection's inputs.
    order = halves_permutation(dh).to(x.device)
    wqkv = wqkv.view(3 * heads, dh, d)[:, order].reshape(3 * heads * dh, d)
    wo = wo.view(d, heads, dh)[:, :, order].reshape(d, heads * dh)
    if keep is None:
        l_attn = l_res1 = l_ffn = l_res2 = None
    else:
        l_attn, l_res1, l_ffn, l_res2 = keep.split(noise_sizes(batch=b, latents=n, dim=d, heads=heads,
                                                               mult=up_w.shape[0] // (2 * d)))
    h = F.layer_norm(x, (d,), ln_w, ln_b)
    qkv = F.linear(h, wqkv).view(b, n, 3 * heads, dh)
    qkv = rotate_halves(qkv, cos[:, None, :], sin[:, None, :])  # q, k and v all turned by their latent's time
    q, k, v = qkv.view(b, n, 3, heads, dh).permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, L, Dh]
    probs = torch.softmax((q * dh**-0.5) @ k.transpose(-1, -2), dim=-1)
    out = (_drop(probs, l_attn, p_attn) @ v).transpose(1, 2)  # [B, L, H, Dh]
    out = rotate_halves(out, cos[:, None, :], -sin[:, None, :]).reshape(b, n, heads * dh)  # "rotate value": back by -t
    x = x + _drop(F.linear(out, wo, bo), l_res1, p_lin)
    hidden = F.layer_norm(x, (d,), f_ln_w, f_ln_b)
    a, gate = F.linear(hidden, up_w, up_b).chunk(2, dim=-1)
    y = F.linear(_drop(a * F.gelu(gate), l_ffn, p_ffn), down_w, down_b)
    return x + _drop(y, l_res2, p_lin)


def layer_weights(layer: nn.Module) -> list[torch.Tensor]:
    """The parameters of a :class:`~popdecode.model.poyo.ProcessorLayer`, in
    :func:`processor_layer`'s order (the tensors themselves: gradients reach them)."""
    a, f = layer.attn, layer.ffn
    return [a.norm.weight, a.norm.bias, a.to_qkv.weight, a.to_out.weight, a.to_out.bias,
            f.norm.weight, f.norm.bias, f.up.weight, f.up.bias, f.down.weight, f.down.bias]


class CompiledProcessor:
    """Runs a POYO's processor layers through one compiled :func:`processor_layer` (every
    layer has the same shapes, so they share the compiled code; a new batch size compiles
    once more, after which the batch axis is treated as dynamic)."""

    def __init__(self, *, model: nn.Module, compile: bool = True):
        if not all(layer.attn.rotate_value for layer in model.proc_layers):
            raise ValueError("processor_layer rotates the values (POYO's processor always does)")
        self.model = model
        self._fn = torch.compile(processor_layer) if compile else processor_layer

    def __reduce__(self):
        # Compiled code cannot be copied or pickled: a copied model trains eagerly.
        return (_none, ())

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: the grid [T, B, P, dim] the encoder produced; returns the same layout."""
        model = self.model
        t, b, p, d = latents.shape
        x = latents.transpose(0, 1).reshape(b, t * p, d)  # window-major, latent = time point x P + row
        # Dense copies: the compiled code is specialised to dense inputs.
        cos, sin = model.latent_phases.real.contiguous(), model.latent_phases.imag.contiguous()
        for layer in model.proc_layers:
            a = layer.attn
            probs = (a.dropout, layer.dropout.p, layer.ffn.dropout.p) if layer.training else (0.0, 0.0, 0.0)
            keep = None
            if any(probs):
                sizes = noise_sizes(batch=b, latents=t * p, dim=d, heads=a.heads)
                keep = keep_masks(sizes, [probs[0], probs[1], probs[2], probs[1]], x.device)
            x = self._fn(x, cos, sin, layer_weights(layer), keep, heads=a.heads, p_attn=probs[0],
                         p_lin=probs[1], p_ffn=probs[2])
        return x.view(b, t, p, d).transpose(0, 1)


def _none() -> None:
    return None
