"""The contract between the tokenizer and the model: one window's tokens, and a packed batch.

Windows carry different numbers of spikes, so a batch does not pad them to a common length:
the tokens of all windows are concatenated ("packed") and ``input_lengths`` says how many
belong to each window, in order. Output queries are packed the same way. The model decides
how to run attention over packed tokens; padding, if any, happens inside it. This layout is
also what a distributed sampler (one shard of windows per rank) and a streaming decoder (one
window at a time) produce, so neither needs another format.

The latent grid is not in the batch: it is the same for every window and is built by the
model from its configuration (``window_length``, ``latent_step``, ``num_latents_per_step``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# Token types (row of the token-type embedding): a spike, and the two per-unit delimiters.
SPIKE, UNIT_START, UNIT_END = 0, 1, 2


@dataclass
class ReadoutTargets:
    """Targets of one readout (e.g. ``hand_vel``) in one window or a packed batch.

    ``index`` points into the packed output queries of the window/batch.
    """

    index: np.ndarray | torch.Tensor  # int64 [m]
    values: np.ndarray | torch.Tensor  # float32 [m, D], already normalised
    weights: np.ndarray | torch.Tensor  # float32 [m], loss weight per timestamp (0 = ignore)
    eval_mask: np.ndarray | torch.Tensor  # bool [m], counted in R^2


@dataclass
class TokenizedWindow:
    """Everything the model needs from one window, as NumPy arrays (no padding)."""

    session_id: str
    session_index: int  # row of the session embedding
    window_start: float  # absolute time of the window start, seconds
    input_units: np.ndarray  # int64 [n], row of the unit embedding (global vocabulary)
    input_types: np.ndarray  # int64 [n], SPIKE / UNIT_START / UNIT_END
    input_times: np.ndarray  # float32 [n], seconds since window start
    output_times: np.ndarray  # float32 [m], seconds since window start
    output_readout: np.ndarray  # int64 [m], index of the readout this query answers
    targets: dict[str, ReadoutTargets] = field(default_factory=dict)


@dataclass
class Batch:
    """A packed batch of windows as tensors, ready for ``model(batch)``.

    For B windows with n_b input tokens and m_b output queries each:
    N = sum n_b, M = sum m_b.
    """

    input_units: torch.Tensor  # int64 [N]
    input_types: torch.Tensor  # int64 [N]
    input_times: torch.Tensor  # float32 [N]
    input_lengths: torch.Tensor  # int64 [B]
    session_index: torch.Tensor  # int64 [B]
    output_times: torch.Tensor  # float32 [M]
    output_lengths: torch.Tensor  # int64 [B]
    output_readout: torch.Tensor  # int64 [M]
    targets: dict[str, ReadoutTargets] = field(default_factory=dict)  # tensors, index into M
    # For stitching predictions back onto the session clock (kept on the CPU).
    session_ids: list[str] = field(default_factory=list)  # [B]
    window_starts: np.ndarray | None = None  # float64 [B]

    @property
    def size(self) -> int:
        return int(self.input_lengths.numel())

    def windows_supervising(self, name: str) -> int:
        """How many of the batch's windows hold a sample of readout ``name`` with weight > 0."""
        t = self.targets.get(name)
        if t is None:
            return 0
        window_of_query = torch.repeat_interleave(torch.arange(self.size, device=self.output_lengths.device),
                                                  self.output_lengths)
        weighted = torch.as_tensor(t.index)[torch.as_tensor(t.weights) > 0]
        return int(torch.unique(window_of_query[weighted]).numel())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor on ``device`` (NumPy fields stay where they are)."""

        def mv(x):
            return x.to(device, non_blocking=non_blocking) if isinstance(x, torch.Tensor) else x

        return Batch(
            input_units=mv(self.input_units),
            input_types=mv(self.input_types),
            input_times=mv(self.input_times),
            input_lengths=mv(self.input_lengths),
            session_index=mv(self.session_index),
            output_times=mv(self.output_times),
            output_lengths=mv(self.output_lengths),
            output_readout=mv(self.output_readout),
            targets={
                k: ReadoutTargets(mv(t.index), mv(t.values), mv(t.weights), mv(t.eval_mask))
                for k, t in self.targets.items()
            },
            session_ids=self.session_ids,
            window_starts=self.window_starts,
        )
