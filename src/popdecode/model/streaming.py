"""Streaming inference: POYO on one window at a time (batch 1), eager or compiled.

A live decoder calls :meth:`POYO.decode_window` once per window. There every operation is
small (128 latents x 64 features), so the cost of *issuing* an operation (Python, dispatch,
allocation: ~5-20 us) is comparable to its arithmetic: the packed forward pass issues ~160
computing operations per window (plus ~150 views). :func:`window_forward` computes the same
function for a single window:

* everything that depends only on the weights is computed once and kept (:func:`fold`):
  the latents' encoder queries, the encoder's output and the decoder's key projections
  with the latent grid's rotations folded in, the attention scale folded into the queries;
* a spike token's key and value before rotation depend only on its unit and token type,
  so for vocabularies up to ~16k units they are tabulated once: a window gathers rows
  instead of normalising and projecting its ~1k tokens;
* the processor's weights are *not* folded per time point (as the batched forward does):
  for one window the 8 rotated copies would be read from memory, not cache;
* no packing bookkeeping (one window: no lengths, masks, padding or index maps);
* q, k and v of a layer stay strided views of their projection, which PyTorch's fused CPU
  attention reads directly, and its output is already laid out for the output projection.

Eagerly that saves only ~10 % of the CPU time (measured: still ~150 computing operations).
:class:`StreamingDecoder` runs it eagerly, or compiled by TorchInductor (``torch.compile``):
the matrix products and attention stay PyTorch's kernels, everything between them becomes
a few fused C++ loops, and one call replaces the ~300 Python-issued operations. The compiled
version rotates with real cos/sin arithmetic (:func:`~popdecode.model.rotary.rotate_halves`),
because the compiler cannot trace the complex-number views the eager rotation uses; both
compute the same rotation. It also forms the tokens' cos and sin itself, and writes the
attention over the latents out as products and a softmax (both measured faster compiled on
2 threads; see :func:`compiled_window_forward`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from popdecode.model.attention import _out_per_time
from popdecode.model.rotary import halves_permutation, rotary_cos_sin_reduced, rotary_phases, rotate, rotate_halves


# Largest key/value table fold() builds (floats; 64 MB): 16k units for poyo-1.3M.
_MAX_KV_TABLE = 2**24


def _ffn_weights(prefix: str, ffn: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.ln_w": ffn.norm.weight, f"{prefix}.ln_b": ffn.norm.bias, f"{prefix}.up_w": ffn.up.weight,
            f"{prefix}.up_b": ffn.up.bias, f"{prefix}.down_w": ffn.down.weight, f"{prefix}.down_b": ffn.down.bias}


def fold(model: nn.Module, *, halves: bool = False) -> dict[str, torch.Tensor]:
    """The tensors :func:`window_forward` needs: the model's weights, with every product that
    depends on weights alone (rotations of the fixed latent grid, the latents' encoder
    queries, the attention scale) computed here once. ``halves``: every rotated head in
    :func:`~popdecode.model.rotary.halves_permutation` order (for :func:`rotate_halves`).
    Call without gradient recording."""
    c = model.config
    t, p, d = c.num_latent_steps, c.num_latents_per_step, c.dim
    step = model.step_phases[:, None, None, :]  # [T, 1, 1, F]: weights [1, dim, H, Dh] -> [T, dim, H, Dh]
    order = halves_permutation(c.dim_head) if halves else torch.arange(c.dim_head)

    def rows(wt: torch.Tensor, heads: int) -> torch.Tensor:
        """Reorder the features of every head along wt's first axis ([heads * Dh, ...])."""
        return wt.unflatten(0, (heads, -1))[:, order].flatten(0, 1)

    units = model.unit_vocab.table()  # the rows the model uses (mixtures while adapting)
    w = {"unit_emb": units, "type_emb": model.token_type_emb.weight,
         "session_emb": model.session_vocab.table(), "latents": model.latent_emb.weight,
         "step_phases": model.step_phases, "step_cos": model.step_phases.real.contiguous(),
         "step_sin": model.step_phases.imag.contiguous(), "omega": model.omega}

    enc = model.enc_atn
    h, dh = enc.heads, enc.dim_head
    if not enc.rotate_value:
        raise ValueError("window_forward rotates the encoder's values (POYO always does)")
    q = enc.to_q(enc.norm(model.latent_emb.weight.repeat(t, 1))).view(t * p, h, dh) * dh**-0.5
    q = rotate(q, model.latent_phases[:, None, :])[..., order]
    w["enc.q"] = q.transpose(0, 1)[None].contiguous()  # [1, H, L, Dh]
    w["enc.ln_w"], w["enc.ln_b"] = enc.norm_context.weight, enc.norm_context.bias
    w["enc.wkv"] = rows(enc.to_kv.weight, 2 * h)
    # A spike token is unit_vocab[u] + token_type_emb[type], so its (unrotated) key and value
    # depend on (u, type) alone: with a small vocabulary every pair's projection is tabulated
    # once, and a window gathers rows instead of normalising and projecting ~1k tokens.
    types = model.token_type_emb.weight
    if units.shape[0] * types.shape[0] * w["enc.wkv"].shape[0] <= _MAX_KV_TABLE:
        x = (units[:, None, :] + types[None, :, :]).flatten(0, 1)  # row u * types + type
        x = F.layer_norm(x, x.shape[-1:], enc.norm_context.weight, enc.norm_context.bias)
        w["enc.kv_table"] = F.linear(x, w["enc.wkv"])
    wo = _out_per_time(enc.to_out, h, dh, model.step_phases, t, 1.0)  # [T, H * Dh, dim]
    w["enc.wo"] = rows(wo.transpose(0, 1), h).transpose(0, 1).contiguous()
    w["enc.bo"] = enc.to_out.bias
    w.update(_ffn_weights("enc_ffn", model.enc_ffn))

    # The processor's weights are NOT folded per time point here: 8 rotated copies of every
    # layer (25 MB for poyo-1.3M) do not stay in cache, and streaming them from memory for
    # one window's 128 latents costs more than rotating the projected latents.
    for i, layer in enumerate(model.proc_layers):
        a = layer.attn
        if not a.rotate_value:
            raise ValueError("window_forward rotates the processor's values (POYO always does)")
        h, dh = a.heads, a.dim_head
        wqkv = rows(a.to_qkv.weight, 3 * h).clone()
        wqkv[: h * dh] *= dh**-0.5  # the attention scale, folded into the query rows
        w[f"proc{i}.wqkv"] = wqkv
        w[f"proc{i}.ln_w"], w[f"proc{i}.ln_b"] = a.norm.weight, a.norm.bias
        w[f"proc{i}.wo"] = rows(a.to_out.weight.t(), h).t().contiguous()
        w[f"proc{i}.bo"] = a.to_out.bias
        w.update(_ffn_weights(f"proc{i}.ffn", layer.ffn))

    dec = model.dec_atn  # values not rotated: v and to_out keep their order
    h, dh = dec.heads, dec.dim_head
    w["dec.q_ln_w"], w["dec.q_ln_b"] = dec.norm.weight, dec.norm.bias
    w["dec.wq"] = rows(dec.to_q.weight, h) * dh**-0.5
    wk, wv = dec.to_kv.weight.t().view(1, d, 2, h, dh).unbind(2)
    w["dec.wk"] = rotate(wk, step)[..., order].reshape(t, d, h * dh).contiguous()  # [T, dim, H * Dh]
    w["dec.wv"] = wv.reshape(d, h * dh).contiguous()
    w["dec.ln_w"], w["dec.ln_b"] = dec.norm_context.weight, dec.norm_context.bias
    w["dec.wo"], w["dec.bo"] = dec.to_out.weight, dec.to_out.bias
    w.update(_ffn_weights("dec_ffn", model.dec_ffn))
    return w


def _ffn(x: torch.Tensor, w: dict, prefix: str) -> torch.Tensor:
    h = F.layer_norm(x, x.shape[-1:], w[f"{prefix}.ln_w"], w[f"{prefix}.ln_b"])
    a, gate = F.linear(h, w[f"{prefix}.up_w"], w[f"{prefix}.up_b"]).chunk(2, dim=-1)
    return F.linear(a * F.gelu(gate), w[f"{prefix}.down_w"], w[f"{prefix}.down_b"])


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Projections of the latent grid [T, P, H * Dh] -> [1, H, T * P, Dh], a strided view."""
    t, p, _ = x.shape
    return x.view(t, p, heads, -1).permute(2, 0, 1, 3).reshape(1, heads, t * p, -1)


def _grid(out: torch.Tensor, t: int) -> torch.Tensor:
    """Attention output [1, H, T * P, Dh] -> [T, P, H * Dh] (free: the fused kernel writes [L, H, Dh])."""
    _, h, n, dh = out.shape
    return out[0].transpose(0, 1).reshape(t, n // t, h * dh)


def _latent_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, written_out: bool) -> torch.Tensor:
    """softmax(q k^T) v over a window's latents, [1, H, L, Dh] operands, q pre-scaled.
    ``written_out``: two batched products and a softmax, which TorchInductor fuses; compiled,
    on 2 threads, this ran a window 7 % faster than PyTorch's fused kernel does on 128 x 128
    heads, while eagerly the fused kernel is as fast or faster (BENCHMARKS.md)."""
    if written_out:
        return (torch.softmax(q[0] @ k[0].transpose(1, 2), dim=-1) @ v[0])[None]
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)


def window_forward(w: dict[str, torch.Tensor], units: torch.Tensor, types: torch.Tensor, token_rot,
                   session: torch.Tensor, query_rot, head_w: torch.Tensor, head_b: torch.Tensor,
                   *, heads: tuple[int, int, int], halves: bool) -> torch.Tensor:
    """POYO on one window: tokens (``units``, ``types`` [n], turned by ``token_rot``) -> readout
    [m, D] at m query times (turned by ``query_rot``), for ``session`` (int64 [1]) and the
    readout head (``head_w``, ``head_b``). ``w`` is :func:`fold`'s output with the same
    ``halves``; ``heads`` = (cross, self, dim_head).

    ``halves`` picks the cos/sin rotation on heads in halves order (what TorchInductor
    compiles well; ``*_rot`` are (cos, sin) pairs) over the
    complex rotation on interleaved pairs (fewer eager operations; ``*_rot`` are complex
    phases from :func:`rotary_phases`), and with it the written-out attention over the latents
    (:func:`_latent_attention`). The caller forms the cos and sin (:func:`compiled_window_forward`
    inside the compiled code, reduced to one turn first; float64 cos and sin compile to scalar
    loops, 5x slower than PyTorch's own kernels)."""
    cross, self_heads, dh = heads
    t = w["enc.wo"].shape[0]
    if halves:
        def rot(x, cos_sin, inplace):
            return rotate_halves(x, cos_sin[0][:, None, :], cos_sin[1][:, None, :])

        def turn_grid(x, back):  # x [T, P, heads, Dh], turned by each latent's time (or back)
            sin = w["step_sin"][:, None, None, :]
            return rotate_halves(x, w["step_cos"][:, None, None, :], -sin if back else sin)
    else:
        def rot(x, phases, inplace):
            return rotate(x, phases[:, None, :], inplace=inplace)

        def turn_grid(x, back):  # in place: x is always a fresh result nothing else reads
            phases = w["step_phases"][:, None, None, :]
            return rotate(x, phases.conj() if back else phases, inplace=True)

    # Encoder: the fixed latent queries attend to the window's tokens (rotate value on).
    if "enc.kv_table" in w:
        kv = F.embedding(units * w["type_emb"].shape[0] + types, w["enc.kv_table"])
    else:
        tokens = F.embedding(units, w["unit_emb"]) + F.embedding(types, w["type_emb"])
        ctx = F.layer_norm(tokens, tokens.shape[-1:], w["enc.ln_w"], w["enc.ln_b"])
        kv = F.linear(ctx, w["enc.wkv"])
    kv = rot(kv.view(-1, 2 * cross, dh), token_rot, True)  # [n, 2H, Dh]: k and v heads
    kv = kv.transpose(0, 1)[None]  # [1, 2H, n, Dh], a view
    out = F.scaled_dot_product_attention(w["enc.q"], kv[:, :cross], kv[:, cross:], scale=1.0)
    lat = w["latents"] + torch.baddbmm(w["enc.bo"], _grid(out, t), w["enc.wo"])  # [T, P, dim]
    lat = lat + _ffn(lat, w, "enc_ffn")

    # Processor: self-attention over the latent grid; q, k, v (all rotated by their latent's
    # time) from one projection, the output turned back by -t before its projection.
    i = 0
    while f"proc{i}.wqkv" in w:
        x = F.layer_norm(lat, lat.shape[-1:], w[f"proc{i}.ln_w"], w[f"proc{i}.ln_b"])
        qkv = turn_grid(F.linear(x, w[f"proc{i}.wqkv"]).view(t, -1, 3 * self_heads, dh), False)
        q, k, v = qkv.view(-1, 3, self_heads, dh).permute(1, 2, 0, 3)[:, None]  # each [1, H, L, Dh], views
        out = _latent_attention(q, k, v, halves)[0].transpose(0, 1)  # [L, H, Dh]
        out = turn_grid(out.reshape(t, -1, self_heads, dh), True).reshape(out.shape[0], -1)
        lat = lat + F.linear(out, w[f"proc{i}.wo"], w[f"proc{i}.bo"]).view(lat.shape)
        lat = lat + _ffn(lat, w, f"proc{i}.ffn")
        i += 1

    # Decoder: the session's query, turned to each output time, attends to the latents.
    sv = F.embedding(session, w["session_emb"])  # [1, dim]
    q = F.linear(F.layer_norm(sv, sv.shape[-1:], w["dec.q_ln_w"], w["dec.q_ln_b"]), w["dec.wq"])
    m = (query_rot[0] if halves else query_rot).shape[0]
    q = rot(q.view(1, cross, dh).expand(m, -1, -1), query_rot, False)  # [m, H, Dh]
    ctx = F.layer_norm(lat, lat.shape[-1:], w["dec.ln_w"], w["dec.ln_b"])
    k = _heads(torch.bmm(ctx, w["dec.wk"]), cross)
    v = _heads(torch.matmul(ctx, w["dec.wv"]), cross)
    out = _latent_attention(q.transpose(0, 1)[None], k, v, halves)  # [1, H, m, Dh]
    x = F.linear(out[0].transpose(0, 1).reshape(out.shape[2], -1), w["dec.wo"], w["dec.bo"]) + sv
    x = x + _ffn(x, w, "dec_ffn")
    return F.linear(x, head_w, head_b)


def compiled_window_forward(w: dict[str, torch.Tensor], units: torch.Tensor, types: torch.Tensor,
                            token_times: torch.Tensor, session: torch.Tensor, query_times: torch.Tensor,
                            head_w: torch.Tensor, head_b: torch.Tensor, *, heads: tuple[int, int, int]) -> tuple:
    """What :class:`StreamingDecoder` compiles: :func:`window_forward` in halves order, with the
    tokens' and queries' cos and sin formed inside the compiled code (fused into its first
    loops instead of a few separate PyTorch calls before it). Returns (readout [m, D], the
    tokens' (cos, sin), the queries' (cos, sin)).

    The cos and sin are returned only so that TorchInductor stores them: a graph output is
    always materialised, so each token's 16 angles are evaluated once, in a parallel loop.
    As intermediate values the compiler inlined them into the loop that gathers and rotates
    the tokens' keys and values, evaluating them again for every head, on one thread (1.13
    -> 0.48 ms per poyo-1.3M window, BENCHMARKS.md)."""
    omega = w["omega"]
    token_cs, query_cs = rotary_cos_sin_reduced(token_times, omega), rotary_cos_sin_reduced(query_times, omega)
    out = window_forward(w, units, types, token_cs, session, query_cs, head_w, head_b, heads=heads, halves=True)
    return out, token_cs, query_cs


def _no_decoder() -> None:
    return None


class StreamingDecoder:
    """Decodes single windows of a POYO model with :func:`window_forward`, eager or compiled.

    The folded weights are recomputed whenever a parameter of the model changes (tracked
    by identity and version counter, as an optimiser step or growing a vocabulary changes
    them), so the decoder can be kept across adaptation steps.

    ``compile=True`` compiles :func:`window_forward` with TorchInductor for variable token
    and query counts (one compilation serves every window length; a window of exactly one
    token or one query compiles once more, and so does a grown vocabulary). :meth:`warm_up` compiles
    it on a small window right away; if compilation fails (no C++ compiler, an unsupported
    platform) the decoder warns and stays eager.
    """

    def __init__(self, *, model: nn.Module, compile: bool = False):
        self.model = model
        self._weights: tuple | None = None
        self._slots: list | None = None
        self._fn = window_forward
        if compile:
            # Only the token and query counts vary (marked dynamic per call); every weight's
            # shape is a constant of the compiled code.
            self._fn = torch.compile(compiled_window_forward)
        self.compiled = compile

    def __reduce__(self):
        # Copying or pickling a model drops its decoder (compiled code cannot be copied);
        # the copy makes a fresh, eager one on first use.
        return (_no_decoder, ())

    def _folded(self) -> dict[str, torch.Tensor]:
        # Walking model.parameters() costs ~130 us, as much as a few layers' arithmetic: the
        # (module, name) slots are listed once (a POYO's modules are fixed at construction;
        # growing a vocabulary replaces the Parameter in its slot, which the key sees).
        if self._slots is None:
            self._slots = [(m._parameters, n) for m in self.model.modules() for n, p in m._parameters.items() if p is not None]
        # Mixing weights of new rows (adaptation) live outside the modules: their versions too.
        mixing = [v.mixture.logits for v in (self.model.unit_vocab, self.model.session_vocab) if v.mixture]
        key = (self.compiled, *((d[n].data_ptr(), d[n]._version) for d, n in self._slots),
               *((m.data_ptr(), m._version) for m in mixing))
        if self._weights is None or self._weights[0] != key:
            with torch.no_grad():
                self._weights = (key, fold(self.model, halves=self.compiled))
        return self._weights[1]

    def __call__(self, *, input_units, input_types, input_times, session_index: int, output_times,
                 readout: int) -> torch.Tensor:
        model = self.model
        head = list(model.readouts.values())[readout]
        c = model.config
        session = torch.tensor([session_index], device=input_units.device)
        heads = (c.cross_heads, c.self_heads, c.dim_head)
        with torch.no_grad():
            if self.compiled:
                # The compiled code assumes dense inputs: a strided view would compile again.
                inputs = [x.contiguous() for x in (input_units, input_types, input_times, output_times)]
                for x in inputs:
                    torch._dynamo.maybe_mark_dynamic(x, 0)
                units, types, token_times, query_times = inputs
                return self._fn(self._folded(), units, types, token_times, session, query_times,
                                head.weight, head.bias, heads=heads)[0]
            return self._fn(self._folded(), input_units, input_types, rotary_phases(input_times, model.omega), session,
                            rotary_phases(output_times, model.omega), head.weight, head.bias, heads=heads, halves=False)

    def warm_up(self) -> bool:
        """Run one small window (compiling it if ``compile``); False, with a warning, if
        compilation failed and the decoder fell back to eager."""
        device = self.model.omega.device
        n, m = 8, 4
        try:
            self(input_units=torch.zeros(n, dtype=torch.int64, device=device),
                 input_types=torch.zeros(n, dtype=torch.int64, device=device),
                 input_times=torch.linspace(0.0, 1.0, n, device=device), session_index=0,
                 output_times=torch.linspace(0.0, 1.0, m, device=device), readout=0)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
            if not self.compiled:
                raise
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); decoding windows eagerly", stacklevel=2)
            self._fn, self.compiled = window_forward, False
            return False
        return True
