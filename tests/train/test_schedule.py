"""The learning-rate schedule against torch's OneCycleLR, computed another way."""

from __future__ import annotations

import pytest
import torch

from popdecode.train.schedule import default_lr, lr_at


def onecycle_lrs(total, peak):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=peak, total_steps=total, pct_start=0.5, anneal_strategy="cos",
        div_factor=1.0, final_div_factor=1e4, cycle_momentum=False,
    )
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", [3, 7, 10, 101])
def test_matches_onecycle(total):
    peak = 1e-3
    ref = onecycle_lrs(total, peak)
    ours = [lr_at(s, total, peak) for s in range(total)]
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_shape_flat_then_cosine_to_lr_over_1e4():
    total, peak = 100, 2e-3
    lrs = [lr_at(s, total, peak) for s in range(total)]
    assert all(lr == peak for lr in lrs[:50])
    assert lrs[-1] == pytest.approx(peak / 1e4)
    assert all(a > b for a, b in zip(lrs[49:-1], lrs[50:]))  # strictly decreasing after the flat half
    # half-way through the decay the cosine is at its midpoint
    assert lr_at(74, total, peak) == pytest.approx((peak + peak / 1e4) / 2, rel=1e-12)


def test_default_lr_scales_with_batch():
    assert default_lr(32) == pytest.approx(1e-3)
    assert default_lr(1024) == pytest.approx(0.032)
