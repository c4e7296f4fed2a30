"""Unit dropout: train on random subsets of a session's units (spec section 4).

Each training window keeps only ``n`` of the session's units, with ``n`` drawn afresh per
window. Seeing the same moment through different sub-populations stops the model from
leaning on a few units and makes it robust to units that appear or vanish between sessions.

How ``n`` is drawn (matching the reference implementation, torch-brain 0.2.1):

1. A session with fewer than ``min_units`` units keeps all of them.
2. Otherwise ``x`` is drawn on [min_units, max_units) from a density shaped by a "triangle"
   ``f(x)``: 1 at ``min_units``, rising linearly to ``peak`` at ``mode_units``, falling
   linearly back to 1 at ``max_units``.
3. ``n = floor(x)``; when ``n`` exceeds the number of units, all units are kept.

Step 2 is rejection sampling from a uniform proposal. The reference's acceptance test
compares ``f(x) / scale`` (scale 10) with the product of two independent uniforms rather
than with one, so a candidate is accepted with probability ``c * (1 - ln c)``, ``c = f(x) /
scale``, not with probability proportional to ``f(x)``. The distribution it really samples is
therefore flatter than the triangle: density ``∝ c (1 - ln c)``, whose peak is about 2.3
times its ends instead of 4. We sample that same distribution, so that a model trained here
sees the same mix of population sizes as one trained with the reference;
:func:`num_units_density` gives it in closed form for tests and plots.
"""

from __future__ import annotations

import numpy as np


def triangle(x: np.ndarray, *, min_units: float, mode_units: float, max_units: float, peak: float) -> np.ndarray:
    """The triangle-shaped score f(x): 1 at min, ``peak`` at mode, 1 at max, 0 outside."""
    x = np.asarray(x, dtype=np.float64)
    rise = 1.0 + (peak - 1.0) * (x - min_units) / max(mode_units - min_units, 1e-12)
    fall = peak - (peak - 1.0) * (x - mode_units) / max(max_units - mode_units, 1e-12)
    f = np.where(x <= mode_units, rise, fall)
    return np.where((x >= min_units) & (x <= max_units), f, 0.0)


def acceptance(x: np.ndarray, *, min_units: float, mode_units: float, max_units: float, peak: float, scale: float) -> np.ndarray:
    """Probability that a uniform candidate ``x`` is accepted: P(U * V <= c) = c (1 - ln c)."""
    c = triangle(x, min_units=min_units, mode_units=mode_units, max_units=max_units, peak=peak) / scale
    c = np.clip(c, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, c * (1.0 - np.log(np.where(c > 0, c, 1.0))), 0.0)


def num_units_density(n: np.ndarray, *, min_units: int, mode_units: int, max_units: int, peak: float = 4.0, scale: float = 10.0, grid: int = 64) -> np.ndarray:
    """P(floor(x) = n) for each integer ``n`` (midpoint rule over [n, n + 1), normalised)."""
    kw = dict(min_units=min_units, mode_units=mode_units, max_units=max_units, peak=peak, scale=scale)
    cells = np.arange(min_units, max_units, dtype=np.float64)
    pts = cells[:, None] + (np.arange(grid) + 0.5)[None, :] / grid
    mass = acceptance(pts, **kw).mean(axis=1)
    mass /= mass.sum()
    n = np.asarray(n, dtype=np.int64)
    inside = (n >= min_units) & (n < max_units)
    return np.where(inside, mass[np.clip(n - min_units, 0, len(mass) - 1)], 0.0)


def sample_num_units(
    num_units: int,
    rng: np.random.Generator,
    *,
    min_units: int = 30,
    mode_units: int = 100,
    max_units: int = 300,
    peak: float = 4.0,
    scale: float = 10.0,
    max_rounds: int = 8,
) -> int:
    """How many of ``num_units`` units to keep in one window (see the module docstring)."""
    if num_units < min_units:
        return num_units
    rise = (peak - 1.0) / max(mode_units - min_units, 1e-12)
    fall = (peak - 1.0) / max(max_units - mode_units, 1e-12)
    for _ in range(max_rounds):
        # 16 candidates per round from one generator call: acceptance is at least ~1/3, so a
        # round nearly always suffices. Scalar arithmetic: this runs once per window.
        for x, u, v in (rng.random((16, 3)) * (max_units - min_units, 1.0, 1.0) + (min_units, 0.0, 0.0)).tolist():
            f = 1.0 + rise * (x - min_units) if x <= mode_units else peak - fall * (x - mode_units)
            if u * v * scale <= f:
                return min(int(x), num_units)
    return num_units  # practically unreachable; keeping everyone is the safe fallback


def keep_units(
    num_units: int,
    rng: np.random.Generator,
    *,
    min_units: int = 30,
    mode_units: int = 100,
    max_units: int = 300,
    peak: float = 4.0,
    scale: float = 10.0,
) -> np.ndarray:
    """Sorted local indices of the units kept in one window (a uniformly random subset)."""
    n = sample_num_units(
        num_units, rng, min_units=min_units, mode_units=mode_units, max_units=max_units, peak=peak, scale=scale
    )
    if n >= num_units:
        return np.arange(num_units)
    return np.sort(rng.permutation(num_units)[:n])
