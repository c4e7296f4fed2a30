"""The learning-rate schedule: flat, then a cosine down to lr / 10^4 (spec section 5).

POYO scales the peak learning rate with the batch size (3.125e-5 per window, i.e. 1e-3 at
batch 32), keeps it flat for the first half of training and then follows half a cosine
down to ``lr / final_div`` on the last step. No warm-up, no gradient clipping.

Step ``s`` of ``total`` (0-based): with ``a = flat_fraction * total - 1`` (the end of the
flat phase) and ``b = total - 1`` (the last step),

    lr(s) = peak                                             for s <= a
    lr(s) = low + (peak - low) * (1 + cos(pi * (s - a) / (b - a))) / 2   otherwise

with ``low = peak / final_div``. This is the same curve as ``torch.optim.lr_scheduler.
OneCycleLR(max_lr=peak, total_steps=total, pct_start=flat_fraction, anneal_strategy="cos",
div_factor=1, final_div_factor=final_div)`` (its first phase, from peak to peak, is flat),
which the tests use as the independent reference. The trainer sets the rate of every
parameter group from :func:`lr_at` before each step, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

LR_PER_WINDOW = 3.125e-5


def default_lr(batch_size: int) -> float:
    """The peak learning rate POYO uses for a batch of ``batch_size`` windows."""
    return LR_PER_WINDOW * batch_size


def lr_at(step: int, total_steps: int, peak: float, *, flat_fraction: float = 0.5,
          final_div: float = 1e4) -> float:
    """Learning rate at ``step`` (0-based) of a run of ``total_steps`` steps."""
    if total_steps <= 1:
        return peak
    low = peak / final_div
    flat_end = flat_fraction * total_steps - 1
    last = total_steps - 1
    if step <= flat_end:
        return peak
    if step >= last:
        return low
    pct = (step - flat_end) / (last - flat_end)
    return low + (peak - low) * (1.0 + math.cos(math.pi * pct)) / 2.0
