"""POYO: decode behaviour from spikes of any set of neurons (Azabou et al., NeurIPS 2023).

The network, read as the paper's figure from left to right, for one 1 s window:

1. **Spike tokens.** Each spike of unit u becomes the vector
   ``unit_vocab[u] + token_type_emb[SPIKE]``, stamped with its time t in the window. Each
   unit present also contributes two delimiter tokens (types UNIT_START at t = 0 and
   UNIT_END at t = 1 s), so a silent unit is still seen. A window holds ~1k tokens; their
   number varies from window to window, so batches keep them *packed* (concatenated, with
   per-window lengths) and no layer but attention ever sees padding.

2. **Encoder: compress spikes into latents.** 128 latent tokens (16 learned vectors, repeated
   at 8 times t = 62.5 ms, 187.5 ms, ..., 937.5 ms) cross-attend to the window's spike
   tokens: ``lat = lat + CrossAttn(LN(lat), LN(tokens))`` then ``lat = lat + FFN(lat)``.
   Attention is rotary in time (:mod:`popdecode.model.rotary`): it sees spike times only
   relative to the latent's time, and values are rotated too ("rotate value"). From here on
   the cost no longer depends on the number of spikes.

3. **Processor.** ``depth`` self-attention layers over the 128 latents, each
   ``lat = lat + Drop(SelfAttn(LN(lat)))``, ``lat = lat + Drop(FFN(lat))``, rotary in the
   latent times (rotate value on).

4. **Decoder: read out at any time.** One query per behaviour timestamp to predict, equal to
   the session's embedding ``session_vocab[s]`` and stamped with that timestamp's time,
   cross-attends to the latents (rotate value off): ``q = q + CrossAttn(LN(q), LN(lat))``,
   ``q = q + FFN(q)``. The session identity enters the network only here.

5. **Readouts.** A linear head per behaviour (``hand_vel``, ``position``, ...) maps each query
   to that behaviour's values; each query says which head answers it, so one model trains
   on sessions with different behaviours.

Adapting to a new session adds rows to ``unit_vocab`` and ``session_vocab``
(:mod:`popdecode.model.vocab`) and trains only those. Every parameter takes part in every
step (unused readout heads receive zero gradients), so DistributedDataParallel needs no
``find_unused_parameters``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from popdecode.model.attention import RotaryDecoderAttention, RotaryEncoderAttention, RotarySelfAttention
from popdecode.model.compiled import CompiledProcessor
from popdecode.model.config import POYOConfig
from popdecode.model.dropout import Dropout
from popdecode.model.feedforward import FeedForward
from popdecode.model.packing import Packing
from popdecode.model.precision import float32_where_shapes_vary
from popdecode.model.rotary import rotary_frequencies, rotary_phases
from popdecode.model.streaming import StreamingDecoder
from popdecode.model.vocab import Vocabulary


class ProcessorLayer(nn.Module):
    """One latent self-attention layer with its feed-forward block, dropout on both residuals."""

    def __init__(self, config: POYOConfig):
        super().__init__()
        c = config
        self.attn = RotarySelfAttention(
            dim=c.dim, heads=c.self_heads, dim_head=c.dim_head, dropout=c.atn_dropout, rotate_value=True
        )
        self.ffn = FeedForward(dim=c.dim, dropout=c.ffn_dropout)
        self.dropout = Dropout(c.lin_dropout)

    def forward(self, x: torch.Tensor, step_rot) -> torch.Tensor:
        """x: the latent grid [T, B, P, dim]."""
        x = x + self.dropout(self.attn(x, step_rot))
        return x + self.dropout(self.ffn(x))


class POYO(nn.Module):
    """The POYO network. ``model(batch)`` maps a packed :class:`~popdecode.tokenize.batch.Batch`
    to ``{readout name: predictions [m_r, D_r]}``.

    config:   the network's shape (:class:`POYOConfig`, or one of ``PRESETS``)
    readouts: readout name -> output width, e.g. ``{"hand_vel": 2, "position": 2}``; the order
              gives the readout index used in ``Batch.output_readout``.
    """

    def __init__(self, *, config: POYOConfig, readouts: dict[str, int]):
        super().__init__()
        if not readouts:
            raise ValueError("a POYO model needs at least one readout")
        c = self.config = dataclasses.replace(config)  # a copy: the caller's object may change later
        s = c.emb_init_scale

        self.unit_vocab = Vocabulary(dim=c.dim, init_scale=s, kind="unit")
        self.session_vocab = Vocabulary(dim=c.dim, init_scale=s, kind="session")
        self.token_type_emb = nn.Embedding(4, c.dim)
        self.latent_emb = nn.Embedding(c.num_latents_per_step, c.dim)
        nn.init.normal_(self.token_type_emb.weight, std=s)
        nn.init.normal_(self.latent_emb.weight, std=s)

        self.enc_atn = RotaryEncoderAttention(
            dim=c.dim, heads=c.cross_heads, dim_head=c.dim_head, dropout=c.atn_dropout, rotate_value=True
        )
        self.enc_ffn = FeedForward(dim=c.dim, dropout=c.ffn_dropout)
        self.proc_layers = nn.ModuleList(ProcessorLayer(c) for _ in range(c.depth))
        self.dec_atn = RotaryDecoderAttention(dim=c.dim, heads=c.cross_heads, dim_head=c.dim_head, dropout=c.atn_dropout)
        self.dec_ffn = FeedForward(dim=c.dim, dropout=c.ffn_dropout)
        self.readouts = nn.ModuleDict({name: nn.Linear(c.dim, int(d)) for name, d in readouts.items()})

        # Rotary frequencies and the latent grid follow from the config: buffers, not weights.
        omega = rotary_frequencies(num_frequencies=c.dim_head // 4, t_min=c.t_min, t_max=c.t_max)
        self.register_buffer("omega", omega, persistent=False)
        steps = np.arange(0.0, c.window_length, c.latent_step) + c.latent_step / 2
        latent_times = torch.from_numpy(np.repeat(steps, c.num_latents_per_step))  # time-major
        self.register_buffer("latent_times", latent_times.float(), persistent=False)
        self.register_buffer("latent_rows", torch.arange(c.num_latents_per_step).repeat(len(steps)), persistent=False)
        phases = rotary_phases(latent_times, omega)  # constants: computed once, here
        self.register_buffer("latent_phases", phases, persistent=False)  # [L, F], per latent
        self.register_buffer("step_phases", phases[:: c.num_latents_per_step].clone(), persistent=False)  # [T, F]
        self._streaming = None  # decode_window's StreamingDecoder, made on first use
        self._train_processor = None  # a CompiledProcessor after compile_for_training()

    @property
    def readout_names(self) -> list[str]:
        """Readout names; position i is readout index i in ``Batch.output_readout``."""
        return list(self.readouts.keys())

    @property
    def readout_dims(self) -> dict[str, int]:
        return {name: head.out_features for name, head in self.readouts.items()}

    # ------------------------------------------------------------------ forward passes

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """Predictions for a packed Batch: ``{name: [m_r, D_r]}`` for each readout present,
        rows in ascending query order (the order of ``batch.targets[name].index``)."""
        return self.forward_packed(
            input_units=batch.input_units,
            input_types=batch.input_types,
            input_times=batch.input_times,
            input_lengths=batch.input_lengths,
            session_index=batch.session_index,
            output_times=batch.output_times,
            output_lengths=batch.output_lengths,
            output_readout=batch.output_readout,
        )

    def forward_packed(
        self,
        *,
        input_units: torch.Tensor,  # int64 [N], rows of unit_vocab
        input_types: torch.Tensor,  # int64 [N], SPIKE / UNIT_START / UNIT_END
        input_times: torch.Tensor,  # float [N], seconds since the window start
        input_lengths: torch.Tensor,  # int64 [B]
        session_index: torch.Tensor,  # int64 [B], rows of session_vocab
        output_times: torch.Tensor,  # float [M]
        output_lengths: torch.Tensor,  # int64 [B]
        output_readout: torch.Tensor,  # int64 [M], index into readout_names
    ) -> dict[str, torch.Tensor]:
        """The network on packed tensors (what :meth:`forward` unpacks a Batch into)."""
        if bool((input_lengths <= 0).any()):
            raise ValueError("every window needs at least one input token (its units' delimiters)")
        latents = self.encode(input_units, input_types, input_times, input_lengths)
        with float32_where_shapes_vary(latents):  # query counts vary per batch (model/precision.py)
            queries = self.decode_latents(latents.float(), session_index, output_times, output_lengths)
            return self.read_out(queries, output_readout)

    def encode(self, input_units, input_types, input_times, input_lengths) -> torch.Tensor:
        """Steps 1-3: packed spike tokens -> the latent grid [T, B, P, dim] (time point, window,
        latent within the time point; see :mod:`popdecode.model.attention`)."""
        c = self.config
        # A token's vector depends on (unit, type) only: embed each distinct pair once.
        n_types = self.token_type_emb.num_embeddings
        pairs, token_context = torch.unique(input_units * n_types + input_types, return_inverse=True)
        context = self.unit_vocab(pairs // n_types) + self.token_type_emb(pairs % n_types)  # [U, dim]
        token_rot = rotary_phases(input_times, self.omega)  # [N, F]
        step_rot = self.step_phases  # [T, F], shared by every window and layer
        t, p = c.num_latent_steps, c.num_latents_per_step
        latents = self.latent_emb.weight  # [P, dim], the same vectors at every time point and window
        with float32_where_shapes_vary(latents):  # per-window shapes (model/precision.py)
            latents = latents.view(1, 1, p, c.dim) + self.enc_atn(
                latents, self.latent_phases, step_rot, context, token_context, token_rot, input_lengths.tolist(),
            )  # -> [T, B, P, dim]
        latents = latents + self.enc_ffn(latents)
        if self._train_processor is not None and self.training and torch.is_grad_enabled():
            return self._train_processor(latents)
        for layer in self.proc_layers:
            latents = layer(latents, step_rot)
        return latents

    def decode_latents(self, latents, session_index, output_times, output_lengths) -> torch.Tensor:
        """Step 4: the latent grid [T, B, P, dim] -> one vector per packed query, [M, dim]."""
        queries = Packing.from_lengths(output_lengths)
        session = self.session_vocab(session_index)  # [B, dim]: the query of every output of a window
        query_rot = rotary_phases(output_times, self.omega)  # [M, F]
        x = self.dec_atn(session, latents, self.step_phases, query_rot, queries) + session[queries.window]  # [M, dim]
        return x + self.dec_ffn(x)

    def read_out(self, x: torch.Tensor, output_readout: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 5: each query through its readout's head; ``{name: [m_r, D_r]}``."""
        heads = list(self.readouts.values())
        if len(heads) == 1:
            return {self.readout_names[0]: heads[0](x)} if x.shape[0] else {}
        # All heads in one product: every head takes part in every step (zero gradient when
        # its behaviour is absent), which DistributedDataParallel requires.
        y = nn.functional.linear(x, torch.cat([h.weight for h in heads]), torch.cat([h.bias for h in heads]))
        out, start = {}, 0
        for r, (name, head) in enumerate(self.readouts.items()):
            rows = torch.nonzero(output_readout == r).squeeze(1)
            if rows.numel():
                out[name] = y[rows, start : start + head.out_features]
            start += head.out_features
        return out

    def forward_padded(
        self,
        *,
        input_units: torch.Tensor,  # int64 [B, N]
        input_types: torch.Tensor,  # int64 [B, N]
        input_times: torch.Tensor,  # float [B, N]
        input_mask: torch.Tensor,  # bool [B, N], True for real tokens
        session_index: torch.Tensor,  # int64 [B]
        output_times: torch.Tensor,  # float [B, M]
        output_mask: torch.Tensor,  # bool [B, M]
        output_readout: torch.Tensor | None = None,  # int64 [B, M]; default readout 0
    ) -> dict[str, torch.Tensor]:
        """The network on padded tensors (torch-brain's layout); packs them and runs
        :meth:`forward_packed`. Predictions come back packed: window by window, real queries only."""
        if output_readout is None:
            output_readout = torch.zeros_like(output_times, dtype=torch.int64)
        return self.forward_packed(
            input_units=input_units[input_mask],
            input_types=input_types[input_mask],
            input_times=input_times[input_mask],
            input_lengths=input_mask.sum(1),
            session_index=session_index,
            output_times=output_times[output_mask],
            output_lengths=output_mask.sum(1),
            output_readout=output_readout[output_mask],
        )

    @torch.no_grad()
    def decode_window(
        self,
        *,
        input_units: torch.Tensor,  # int64 [n]
        input_types: torch.Tensor,  # int64 [n]
        input_times: torch.Tensor,  # float [n], seconds since the window start
        session_index: int,
        output_times: torch.Tensor,  # float [m]
        readout: str | None = None,
    ) -> torch.Tensor:
        """Streaming: decode one window of a live spike stream; returns [m, D] of ``readout``.

        In evaluation mode this runs :mod:`popdecode.model.streaming`: the same function as
        :meth:`forward` for one window, with everything that depends on weights alone
        precomputed and no packing bookkeeping; after :meth:`compile_for_inference`,
        compiled. In training mode (dropout on) it runs :meth:`forward_packed`.
        """
        name = readout or self.readout_names[0]
        r = self.readout_names.index(name)
        n, m = input_units.numel(), output_times.numel()
        device = input_units.device
        if n == 0:
            raise ValueError("every window needs at least one input token (its units' delimiters)")
        if m == 0:
            return torch.zeros(0, self.readouts[name].out_features, device=device)
        if not self.training:
            # One window, no dropout: the streaming path (the same function, without packing).
            if self._streaming is None:
                self._streaming = StreamingDecoder(model=self)
            return self._streaming(input_units=input_units, input_types=input_types, input_times=input_times,
                                   session_index=session_index, output_times=output_times, readout=r)
        out = self.forward_packed(
            input_units=input_units,
            input_types=input_types,
            input_times=input_times,
            input_lengths=torch.tensor([n], device=device),
            session_index=torch.tensor([session_index], device=device),
            output_times=output_times,
            output_lengths=torch.tensor([m], device=device),
            output_readout=torch.full((m,), r, dtype=torch.int64, device=device),
        )
        return out.get(name, torch.zeros(0, self.readouts[name].out_features, device=device))

    def compile_for_inference(self) -> bool:
        """Compile the streaming path of :meth:`decode_window` with TorchInductor (opt in:
        the first compilation takes ~30-45 s on 2 cores, later ones reuse TorchInductor's
        on-disk cache; a window then costs ~20 % less time than eagerly, see BENCHMARKS.md).
        Set the number of threads (``torch.set_num_threads``) before calling: the compiled
        loops keep it. Returns False, with a warning, if compilation is not available here;
        decode_window then stays eager."""
        self._streaming = StreamingDecoder(model=self, compile=True)
        return self._streaming.warm_up()

    def compile_for_training(self, *, compile: bool = True) -> None:
        """Train the processor layers through TorchInductor (:mod:`popdecode.model.compiled`):
        the same function, the same dropout distribution. Applies in training mode with
        gradients recorded; evaluation keeps the eager path. The first training step of each
        batch size compiles (~1 min on 2 cores, cached on disk afterwards). Measured on the
        project's 2-core VM it trains at 0.85-0.9x of the eager speed (BENCHMARKS.md), so it is
        off by default. ``compile=False`` runs the same code eagerly (for tests);
        :meth:`train_eagerly` undoes either."""
        self._train_processor = CompiledProcessor(model=self, compile=compile)

    def train_eagerly(self) -> None:
        """Back to the eager processor for training (see :meth:`compile_for_training`)."""
        self._train_processor = None


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (the vocabularies' padding rows included, as in the paper)."""
    return sum(p.numel() for p in model.parameters())
