import math

import numpy as np
import torch

from popdecode.model.rotary import rotary_cos_sin_reduced, rotary_frequencies, rotary_phases, rotate


def _reference_rotate(x, t, omega):
    """The rotation written out pair by pair in float64 (the spec's formula)."""
    x = x.double().clone()
    for j, w in enumerate(omega.double()):
        a = t.double() * w  # t is shaped to broadcast against x[..., 0]
        c, s = torch.cos(a), torch.sin(a)
        e, o = x[..., 2 * j].clone(), x[..., 2 * j + 1].clone()
        x[..., 2 * j], x[..., 2 * j + 1] = e * c - o * s, o * c + e * s
    return x


def test_periods_are_log_spaced_from_t_min_to_t_max():
    omega = rotary_frequencies(num_frequencies=16, t_min=1e-4, t_max=2.0627)
    periods = 2 * math.pi / omega.double().numpy()
    expected = 1e-4 * (4.0 / 1e-4) ** (np.arange(16) / 16)  # the spec's formula
    np.testing.assert_allclose(periods, expected, rtol=1e-4)


def test_rotation_matches_the_pairwise_formula_and_leaves_the_second_half():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 16)  # [L, H, Dh]: 4 rotated pairs in the first 8 coordinates
    t = torch.rand(5)
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-2, t_max=2.0)
    y = rotate(x, rotary_phases(t, omega)[:, None])
    np.testing.assert_allclose(y.double().numpy(), _reference_rotate(x, t[:, None], omega).numpy(), atol=1e-5)
    assert torch.equal(y[..., 8:], x[..., 8:])


def test_gradient_is_the_backward_rotation_also_when_broadcasting():
    torch.manual_seed(0)
    w = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)  # one weight, rotated at 4 times
    omega = rotary_frequencies(num_frequencies=2, t_min=1e-2, t_max=2.0)
    phases = rotary_phases(torch.rand(4), omega)[:, None, :]
    g = torch.randn(4, 3, 8, dtype=torch.float64)
    (rotate(w, phases).double() * g).sum().backward()
    expected = rotate(g, phases.conj()).sum(0, keepdim=True)
    np.testing.assert_allclose(w.grad.numpy(), expected.double().numpy(), atol=1e-6)


def test_attention_scores_depend_only_on_time_differences():
    torch.manual_seed(0)
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-2, t_max=2.0)

    def score(tq, tk):
        return (rotate(q, rotary_phases(torch.tensor([tq]), omega)) * rotate(k, rotary_phases(torch.tensor([tk]), omega))).sum()

    assert torch.allclose(score(0.3, 0.1), score(0.7, 0.5), atol=1e-5)
    assert not torch.allclose(score(0.3, 0.1), score(0.3, 0.2), atol=1e-3)


def test_large_angles_are_formed_in_float64_and_bf16_input_keeps_its_dtype():
    omega = rotary_frequencies(num_frequencies=16, t_min=1e-4, t_max=2.0627)
    t = torch.tensor([0.9999999403953552])  # a float32 time near 1 s: angle ~ 6.3e4 rad
    z = rotary_phases(t, omega)
    exact = np.exp(1j * 0.9999999403953552 * omega.double().numpy())
    assert np.abs(z.numpy()[0] - exact).max() < 1e-6
    x = torch.randn(7, 2, 16).bfloat16()
    z = rotary_phases(torch.rand(7), omega[:4])[:, None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = rotate(rotate(x, z), z.conj())
    assert y.dtype == torch.bfloat16 and z.dtype == torch.complex64
    assert torch.allclose(y.float(), x.float(), atol=2e-2)


def test_rotation_on_halves_equals_the_complex_rotation_in_permuted_order():
    from popdecode.model.rotary import halves_permutation, rotary_cos_sin, rotate_halves

    torch.manual_seed(0)
    x = torch.randn(7, 3, 16)
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-4, t_max=2.0627)
    t = torch.rand(7)
    order = halves_permutation(16)
    assert sorted(order.tolist()) == list(range(16))
    cos, sin = rotary_cos_sin(t, omega)
    turned = rotate_halves(x[..., order], cos[:, None], sin[:, None])
    expected = rotate(x, rotary_phases(t, omega)[:, None])[..., order]
    torch.testing.assert_close(turned, expected, atol=1e-6, rtol=0)
    back = rotate_halves(turned, cos[:, None], -sin[:, None])  # turning by -t undoes it
    torch.testing.assert_close(back, x[..., order], atol=1e-6, rtol=0)


def test_reduced_cos_sin_of_the_compiled_path_agree_with_float64_ones():
    """Angles reduced to one turn in float64, cos/sin in float32: within float32 rounding of
    numpy's float64 cos/sin, across a window's times and beyond (angles up to ~3e5 rad)."""
    omega = rotary_frequencies(num_frequencies=16, t_min=1e-4, t_max=2.0627)
    t = torch.cat([torch.rand(2000), torch.tensor([0.0, 0.9999999403953552, 5.0])])
    cos, sin = rotary_cos_sin_reduced(t, omega)
    angles = t.double().numpy()[:, None] * omega.double().numpy()
    assert cos.dtype == sin.dtype == torch.float32
    assert np.abs(cos.numpy() - np.cos(angles)).max() < 5e-7
    assert np.abs(sin.numpy() - np.sin(angles)).max() < 5e-7
