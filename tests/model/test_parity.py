"""Our POYO against the authors' (torch-brain 0.2.1) with the same weights and inputs.

Their weights are copied into ours through the converter, so this also tests the name
mapping. Windows are realistic: ~1k spike tokens plus delimiters, ~100 queries, windows of
different lengths so padding and masking matter. Their tokenizer hands float64 times to the
rotary embedding, so they get float64 times here (the same values as our float32 ones).
"""

import numpy as np
import pytest
import torch

from popdecode.model import PRESETS
from popdecode.model.convert import from_torch_brain

tb_models = pytest.importorskip("torch_brain.models")

pytestmark = pytest.mark.parity


def _reference(preset: str, units: list[str], sessions: list[str]):
    c = PRESETS[preset]
    torch.manual_seed(0)
    hp = dict(sequence_length=1.0, latent_step=0.125, num_latents_per_step=c.num_latents_per_step, dim=c.dim,
              depth=c.depth, dim_head=c.dim_head, cross_heads=c.cross_heads, self_heads=c.self_heads,
              ffn_dropout=c.ffn_dropout, lin_dropout=c.lin_dropout, atn_dropout=c.atn_dropout)
    ref = tb_models.POYO(dim_out=2, **hp)
    ref.unit_emb.initialize_vocab(units)
    ref.session_emb.initialize_vocab(sessions)
    with torch.no_grad():  # default LayerNorms/biases are 1 and 0: move them so they count
        for name, p in ref.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return ref.eval(), hp


def _windows(rng, units_per_session, lengths, out_lengths, sessions):
    """Padded inputs as torch-brain's collate makes them: spikes plus 2 delimiters per unit."""
    b = len(lengths)
    n_max, m_max = max(lengths) + 2 * units_per_session, max(out_lengths)
    n_max += -n_max % 8  # their pad8
    units = torch.zeros(b, n_max, dtype=torch.int64); types = torch.zeros_like(units)
    times = torch.zeros(b, n_max, dtype=torch.float64); mask = torch.zeros(b, n_max, dtype=torch.bool)
    otimes = torch.zeros(b, m_max, dtype=torch.float64); omask = torch.zeros(b, m_max, dtype=torch.bool)
    for i, (n, m, s) in enumerate(zip(lengths, out_lengths, sessions)):
        rows = 1 + s * units_per_session + np.arange(units_per_session)
        u = np.concatenate([np.repeat(rows, 2), rng.choice(rows, n)])
        ty = np.concatenate([np.tile([1, 2], units_per_session), np.zeros(n, dtype=np.int64)])
        t = np.concatenate([np.tile([0.0, 1.0], units_per_session), np.sort(rng.random(n))]).astype(np.float32)
        k = len(u)
        units[i, :k], types[i, :k], times[i, :k], mask[i, :k] = map(torch.from_numpy, (u, ty, t.astype(np.float64), np.ones(k, bool)))
        otimes[i, :m] = torch.from_numpy(np.sort(rng.random(m)).astype(np.float32).astype(np.float64))
        omask[i, :m] = True
    return units, types, times, mask, otimes, omask


@pytest.mark.parametrize("preset,lengths,out_lengths", [
    ("poyo-1.3M", [1100, 870, 1350], [100, 90, 110]),
    ("poyo-11.8M", [700, 480], [60, 40]),  # one small batch: keep it fast
])
def test_same_predictions_as_torch_brain(preset, lengths, out_lengths):
    n_units, sessions = 60, [0, 1, 0][: len(lengths)]
    unit_names = [f"s{s}/u{i}" for s in range(2) for i in range(n_units)]
    ref, hp = _reference(preset, unit_names, ["s0", "s1"])
    ours = from_torch_brain(dict(ref.state_dict()), hp)  # the converter under test
    assert ours.unit_vocab.names == unit_names and ours.session_vocab.names == ["s0", "s1"]
    assert torch.equal(ref.rotary_emb.omega[: ours.omega.numel()], ours.omega)

    rng = np.random.default_rng(1)
    units, types, times, mask, otimes, omask = _windows(rng, n_units, lengths, out_lengths, sessions)
    session_index = torch.tensor(sessions) + 1
    b = len(lengths)
    with torch.no_grad():
        expected = ref(
            input_unit_index=units, input_timestamps=times, input_token_type=types, input_mask=mask,
            latent_index=ours.latent_rows[None].expand(b, -1),
            latent_timestamps=ours.latent_times.double()[None].expand(b, -1),
            session_index=session_index, output_timestamps=otimes, output_mask=omask, unpack_output=True,
        )
        got = ours.forward_padded(
            input_units=units, input_types=types, input_times=times.float(), input_mask=mask,
            session_index=session_index, output_times=otimes.float(), output_mask=omask,
        )["hand_vel"]
    expected = torch.cat(expected)
    assert got.shape == expected.shape == (sum(out_lengths), 2)
    assert expected.abs().max() > 0.05  # the comparison is not between near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-5


def test_same_gradients_as_torch_brain():
    """Training mode, dropout off: every parameter's gradient equals theirs (their gradients
    renamed by the same converter as their weights). Covers the backward of the folded
    rotations, of the encoder's per-(unit, type) key/value tables and of the written-out
    attention (our attention dropout set to a value that rounds to nothing)."""
    n_units, sessions = 30, [0, 1, 0]
    unit_names = [f"s{s}/u{i}" for s in range(2) for i in range(n_units)]
    ref, hp = _reference("poyo-1.3M", unit_names, ["s0", "s1"])
    for m in ref.modules():  # dropout off everywhere in theirs
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = 0.0
    ours = from_torch_brain(dict(ref.state_dict()), {**hp, "ffn_dropout": 0.0, "lin_dropout": 0.0, "atn_dropout": 0.0})
    for m in ours.modules():
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = 1e-9  # the written-out training attention, nothing dropped
    ref.train(), ours.train()

    rng = np.random.default_rng(2)
    units, types, times, mask, otimes, omask = _windows(rng, n_units, [300, 170, 240], [40, 25, 33], sessions)
    weights = torch.randn(98, 2, generator=torch.Generator().manual_seed(3))
    b = len(sessions)
    expected = torch.cat(ref(
        input_unit_index=units, input_timestamps=times, input_token_type=types, input_mask=mask,
        latent_index=ours.latent_rows[None].expand(b, -1), latent_timestamps=ours.latent_times.double()[None].expand(b, -1),
        session_index=torch.tensor(sessions) + 1, output_timestamps=otimes, output_mask=omask, unpack_output=True,
    ))
    (expected * weights).sum().backward()
    got = ours.forward_padded(
        input_units=units, input_types=types, input_times=times.float(), input_mask=mask,
        session_index=torch.tensor(sessions) + 1, output_times=otimes.float(), output_mask=omask,
    )["hand_vel"]
    (got * weights).sum().backward()

    params = dict(ref.named_parameters())
    grads = {k: (params[k].grad if k in params and params[k].grad is not None else torch.zeros_like(v) if k in params else v)
             for k, v in ref.state_dict().items()}
    theirs = from_torch_brain(grads, hp).state_dict()
    for name, p in ours.named_parameters():
        scale = theirs[name].abs().max().item()
        assert scale > 0, name
        assert (p.grad - theirs[name]).abs().max().item() <= 1e-4 * scale + 1e-7, name
