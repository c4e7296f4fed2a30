import math

import numpy as np
import torch

from popdecode.model.rotary import rotary_cos_sin, rotary_frequencies, rotate


def test_periods_are_log_spaced_from_t_min_to_t_max():
    omega = rotary_frequencies(num_frequencies=16, t_min=1e-4, t_max=2.0627)
    periods = 2 * math.pi / omega.double().numpy()
    expected = 1e-4 * (4.0 / 1e-4) ** (np.arange(16) / 16)  # the spec's formula
    np.testing.assert_allclose(periods, expected, rtol=1e-4)


def test_rotation_matches_complex_multiplication_and_leaves_second_half():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 16)  # [L, H, Dh]: 4 rotated pairs in the first 8 coordinates
    t = torch.rand(5)
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-2, t_max=2.0)
    cos, sin = rotary_cos_sin(t, omega)
    y = rotate(x, cos[:, None], sin[:, None])
    z = torch.view_as_complex(x[..., :8].double().reshape(5, 3, 4, 2).contiguous())
    turned = z * torch.exp(1j * (t.double()[:, None, None] * omega.double()))
    np.testing.assert_allclose(torch.view_as_real(turned).reshape(5, 3, 8).numpy(), y[..., :8].double().numpy(), atol=1e-5)
    assert torch.equal(y[..., 8:], x[..., 8:])


def test_attention_scores_depend_only_on_time_differences():
    torch.manual_seed(0)
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-2, t_max=2.0)

    def score(tq, tk):
        cq, sq = rotary_cos_sin(torch.tensor([tq]), omega)
        ck, sk = rotary_cos_sin(torch.tensor([tk]), omega)
        return (rotate(q, cq, sq) * rotate(k, ck, sk)).sum()

    assert torch.allclose(score(0.3, 0.1), score(0.7, 0.5), atol=1e-5)
    assert not torch.allclose(score(0.3, 0.1), score(0.3, 0.2), atol=1e-3)


def test_rotating_back_by_minus_t_is_the_identity_and_keeps_dtype_under_bf16():
    x = torch.randn(7, 2, 16).bfloat16()
    omega = rotary_frequencies(num_frequencies=4, t_min=1e-4, t_max=2.0627)
    cos, sin = rotary_cos_sin(torch.rand(7) * 1.0, omega)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = rotate(rotate(x, cos[:, None], sin[:, None]), cos[:, None], -sin[:, None])
    assert y.dtype == torch.bfloat16 and cos.dtype == torch.float32
    assert torch.allclose(y.float(), x.float(), atol=2e-2)
