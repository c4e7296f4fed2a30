"""The hyperparameters of a POYO network, and the two published sizes.

A :class:`POYOConfig` is everything needed to rebuild the network's shape; together with the
readouts (name -> output width) and the two vocabularies it describes a model completely,
which is what ``model.json`` stores beside the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass(kw_only=True)
class POYOConfig:
    """Shape and regularisation of a POYO model (see /work/shared/spec/poyo.md, section 3).

    dim:                  width of every token (spike, latent, query) in the model
    depth:                number of latent self-attention layers (the processor)
    num_latents_per_step: distinct latent vectors, repeated at every latent time point
    cross_heads:          heads of the encoder and decoder cross-attention
    self_heads:           heads of each processor self-attention
    dim_head:             width of one attention head (rotary uses its first half)
    ffn_dropout:          dropout inside every feed-forward block (after GEGLU)
    lin_dropout:          dropout on the processor's residual branches
    atn_dropout:          dropout on the attention probabilities
    window_length:        seconds of spikes one window covers
    latent_step:          seconds between latent time points (window_length / latent_step points)
    t_min, t_max:         shortest and longest rotary period, seconds (log-spaced between)
    emb_init_scale:       standard deviation of every embedding's N(0, s) initialisation
    """

    dim: int
    depth: int
    num_latents_per_step: int
    cross_heads: int
    self_heads: int
    dim_head: int = 64
    ffn_dropout: float = 0.2
    lin_dropout: float = 0.4
    atn_dropout: float = 0.2
    window_length: float = 1.0
    latent_step: float = 0.125
    t_min: float = 1e-4
    t_max: float = 2.0627
    emb_init_scale: float = 0.02

    def __post_init__(self):
        if self.dim_head % 4:
            raise ValueError(f"dim_head must be a multiple of 4 (rotary pairs in its first half), got {self.dim_head}")
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"need 0 < t_min < t_max, got t_min={self.t_min}, t_max={self.t_max}")
        if self.window_length <= 0 or self.latent_step <= 0:
            raise ValueError("window_length and latent_step must be positive")

    @property
    def num_latent_steps(self) -> int:
        """Latent time points per window: (k + 0.5) * latent_step for k < this."""
        # numpy.arange's count, as in the reference: 8 for a 1 s window and 0.125 s steps.
        return len(np.arange(0.0, self.window_length, self.latent_step))

    @property
    def num_latents(self) -> int:
        """Latent tokens per window (time points x latents per step)."""
        return self.num_latent_steps * self.num_latents_per_step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "POYOConfig":
        """The inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown POYOConfig fields: {', '.join(unknown)}")
        return cls(**d)


PRESETS: dict[str, POYOConfig] = {
    # Single-session model of the paper (NLB benchmarks); 1,257,410 parameters with 50 units,
    # 1 session and a 2-D readout.
    "poyo-1.3M": POYOConfig(
        dim=64, depth=6, num_latents_per_step=16, cross_heads=2, self_heads=8,
        ffn_dropout=0.2, lin_dropout=0.4, atn_dropout=0.2,
    ),
    # POYO-MP / POYO-1; 11,724,162 parameters with 50 units, 1 session and a 2-D readout.
    "poyo-11.8M": POYOConfig(
        dim=128, depth=24, num_latents_per_step=32, cross_heads=4, self_heads=8,
        ffn_dropout=0.2, lin_dropout=0.4, atn_dropout=0.2,
    ),
}
