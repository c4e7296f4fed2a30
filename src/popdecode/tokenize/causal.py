"""Causal windows: every behaviour sample decoded from the window that ends at it.

The field's evaluation (spec section 7) answers each sample from windows that see up to half
a second *after* it, and averages two of them. A live decoder cannot: at time t it has the
spikes of [t - window, t) and nothing later, and it answers the query at the window's end.
:func:`causal_windows` lists one such window per sample, so that ``popdecode evaluate
--causal`` scores a model exactly as ``popdecode serve`` runs it (same tokens, same query
time, one prediction per sample, nothing to stitch).

With a ``delay`` d, sample t is answered from the window that ends d later, [t + d -
window, t + d), at its query time window - d: a live decoder that reports each sample d
seconds late (``popdecode serve --delay``) and gains the spikes of those d seconds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from popdecode.data.intervals import Intervals


def causal_windows(
    sessions: Sequence,
    intervals: Sequence[Intervals],
    session_readouts: dict[str, list[str]],
    *,
    window_length: float = 1.0,
    delay: float = 0.0,
) -> list[tuple[int, float, dict[str, np.ndarray]]]:
    """``(session_index, t0, {readout: [t]})`` for every sample time t of every readout a
    session supervises that lies inside its ``intervals``, with t0 = t + delay - window_length.

    The window [t0, t) may begin before the interval (and before the recording: then it
    simply holds fewer spikes), as a live decoder's would.
    """
    if not window_length > 0:
        raise ValueError(f"window_length must be positive, got {window_length}")
    if not 0 <= delay < window_length:
        raise ValueError(f"delay must be in [0, window_length), got {delay}")
    out: list[tuple[int, float, dict[str, np.ndarray]]] = []
    for si, (session, iv) in enumerate(zip(sessions, intervals)):
        for name in session_readouts.get(session.id, []):
            times = np.asarray(session.series[name].timestamps, dtype=np.float64)
            for t in times[iv.contains(times)].tolist():
                out.append((si, t + delay - window_length, {name: np.array([t])}))
    return out
