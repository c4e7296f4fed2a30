"""LAMB against a hand computation, and the sparse-rows rule bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.train.lamb import Lamb, RowPreservingAdamW, build_optimizer


def lamb_reference(w, grads, *, lr, b1=0.9, b2=0.999, eps=1e-6, wd=1e-4, clamp=10.0):
    """LAMB written out step by step in float64 NumPy, for a dense tensor."""
    w = np.array(w, dtype=np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for g in grads:
        g = np.asarray(g, dtype=np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = m / (np.sqrt(v) + eps) + wd * w
        wn = min(np.sqrt(np.sum(w * w)), clamp)
        un = np.sqrt(np.sum(u * u))
        r = wn / un if wn > 0 and un > 0 else 1.0
        w = w - lr * r * u
    return w, m, v


def test_lamb_matches_hand_computation_over_three_steps():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = Lamb([p], lr=0.01)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    w_ref, m_ref, v_ref = lamb_reference(w0, grads, lr=0.01)
    np.testing.assert_allclose(p.detach().numpy(), w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.state[p]["exp_avg"].numpy(), m_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(opt.state[p]["exp_avg_sq"].numpy(), v_ref, rtol=1e-5, atol=1e-9)


def test_lamb_first_step_moves_by_lr_times_weight_norm():
    # The trust ratio rescales the step to norm lr * min(|w|, 10), whatever the gradient.
    w0 = torch.full((5,), 3.0)  # |w| = 6.7 < 10
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0])
    opt.step()
    moved = torch.linalg.vector_norm(p.detach() - w0).item()
    assert moved == pytest.approx(0.1 * float(torch.linalg.vector_norm(w0)), rel=1e-5)
    # a weight norm above the clamp moves by lr * 10
    p2 = torch.nn.Parameter(torch.full((4,), 100.0))
    opt2 = Lamb([p2], lr=0.1, weight_decay=0.0)
    p2.grad = torch.ones(4)
    opt2.step()
    assert torch.linalg.vector_norm(p2.detach() - 100.0).item() == pytest.approx(1.0, rel=1e-5)


def test_zero_weights_use_trust_ratio_one():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = Lamb([p], lr=0.5, weight_decay=0.0, eps=0.0)
    p.grad = torch.tensor([2.0, -1.0, 0.5])
    opt.step()
    # no bias correction: m / sqrt(v) = (1 - 0.9) / sqrt(1 - 0.999) * sign(g); the ratio is 1
    step = 0.5 * 0.1 / 0.001 ** 0.5
    assert p.detach().tolist() == pytest.approx([-step, step, -step], rel=1e-6)


@pytest.mark.parametrize("name", ["lamb", "adamw"])
def test_untouched_rows_stay_bit_for_bit(name):
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(6, 4))
    dense = torch.nn.Parameter(torch.randn(3))
    opt = build_optimizer([{"params": [table], "sparse_rows": True}, {"params": [dense]}],
                          name=name, lr=0.05, weight_decay=0.1)
    # step 1 touches rows 1 and 2, step 2 touches rows 2 and 4
    for rows in ([1, 2], [2, 4]):
        before = table.detach().clone()
        state_before = {k: v.clone() for k, v in opt.state[table].items() if torch.is_tensor(v) and v.dim()}
        g = torch.zeros(6, 4)
        g[rows] = torch.randn(len(rows), 4)
        table.grad = g
        dense.grad = torch.randn(3)
        opt.step()
        untouched = [r for r in range(6) if r not in rows]
        assert torch.equal(table.detach()[untouched], before[untouched])
        assert not torch.equal(table.detach()[rows], before[rows])
        for k, v in state_before.items():
            assert torch.equal(opt.state[table][k][untouched], v[untouched]), k
    # rows never touched still have zero moments (no decay, no update ever happened)
    assert torch.equal(opt.state[table]["exp_avg"][[0, 3, 5]], torch.zeros(3, 4))


def test_sparse_rows_update_equals_lamb_on_the_touched_rows_alone():
    # The touched rows move exactly as a dense LAMB on a tensor made of those rows would.
    torch.manual_seed(1)
    w0 = torch.randn(5, 3)
    rows = [0, 3]
    g = torch.zeros(5, 3)
    g[rows] = torch.randn(2, 3)
    table = torch.nn.Parameter(w0.clone())
    opt = Lamb([{"params": [table], "sparse_rows": True}], lr=0.02)
    table.grad = g
    opt.step()
    w_ref, _, _ = lamb_reference(w0[rows].numpy(), [g[rows].numpy()], lr=0.02)
    np.testing.assert_allclose(table.detach()[rows].numpy(), w_ref, rtol=1e-5, atol=1e-7)


def test_adamw_dense_matches_torch_adamw():
    torch.manual_seed(2)
    a = torch.nn.Parameter(torch.randn(4, 2))
    b = torch.nn.Parameter(a.detach().clone())
    ours = RowPreservingAdamW([{"params": [a], "sparse_rows": True}], lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    for _ in range(3):
        g = torch.randn(4, 2)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.equal(a.detach(), b.detach())


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.ones(1))]}], name="sgd", lr=0.1)
