"""Stitching: from overlapping window predictions back to one prediction per sample.

Evaluation windows overlap (1 s windows every 0.5 s, spec section 7), so most behaviour
samples are predicted by two windows, each seeing it at a different place in its window. The
:class:`Stitcher` puts every prediction back on the session clock (window start + query
time) and averages the predictions that land on the same sample. It then keeps the samples
inside the evaluated intervals (a window may reach past a short trial) and, by default, only
those in the eval mask, which is what R^2 is computed over.

Two predictions are "the same sample" when their absolute times agree to within
``tolerance`` (1 µs): query times travel as float32 seconds since the window start, so one
sample seen from two windows differs in the last bits. Behaviour is sampled far more
coarsely than that; two samples recorded at exactly the same time are merged (their
prediction is identical anyway, their targets are averaged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from popdecode.data.intervals import Intervals
from popdecode.tokenize.batch import Batch


@dataclass
class Stitched:
    """One (session, readout)'s stitched predictions, sorted by time."""

    timestamps: np.ndarray  # float64 [T], absolute seconds
    predictions: np.ndarray  # float32 [T, D], mean over the windows that predicted the sample
    targets: np.ndarray  # float32 [T, D]
    eval_mask: np.ndarray  # bool [T]
    counts: np.ndarray  # int64 [T], how many windows predicted the sample


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class Stitcher:
    """Accumulates batch predictions and returns them averaged per sample.

    Args (keyword-only):
        intervals: session id -> the evaluated intervals (e.g. its valid split); samples
            outside them are dropped. Sessions not listed keep every sample.
        normalization: readout -> (mean, std); when given, predictions and targets are
            returned in the readout's original units (R^2 is the same either way).
        tolerance: seconds within which two predictions are the same sample.
    """

    def __init__(
        self,
        *,
        intervals: dict[str, Intervals] | None = None,
        normalization: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        tolerance: float = 1e-6,
    ):
        self.intervals = dict(intervals or {})
        self.normalization = dict(normalization or {})
        self.tolerance = float(tolerance)
        self._parts: dict[tuple[str, str], list[tuple[np.ndarray, ...]]] = {}

    def add(self, batch: Batch, predictions: dict[str, torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray) -> None:
        """Record one batch's predictions.

        ``predictions`` is either a dict readout -> [m_r, D_r] rows aligned with
        ``batch.targets[r].index``, or one [M, D_max] array over all packed queries (the
        first D_r columns of readout r's rows are used).
        """
        starts = np.asarray(batch.window_starts, dtype=np.float64)
        out_lengths = _numpy(batch.output_lengths).astype(np.int64)
        window_of = np.repeat(np.arange(len(out_lengths)), out_lengths)  # packed query -> window
        times = _numpy(batch.output_times).astype(np.float64)
        session_ids = np.asarray(batch.session_ids, dtype=object)
        full = None if isinstance(predictions, dict) else _numpy(predictions)
        for name, t in batch.targets.items():
            index = _numpy(t.index).astype(np.int64)
            values = _numpy(t.values).astype(np.float32)
            if full is not None:
                pred = full[index, : values.shape[1]]
            else:
                pred = _numpy(predictions[name]).astype(np.float32).reshape(len(index), -1)
            win = window_of[index]
            absolute = starts[win] + times[index]
            mask = _numpy(t.eval_mask).astype(bool)
            for sid in np.unique(session_ids[win]):
                sel = session_ids[win] == sid
                self._parts.setdefault((str(sid), name), []).append(
                    (absolute[sel], pred[sel].astype(np.float32), values[sel], mask[sel])
                )

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self._parts)

    def result(self, session_id: str, readout: str, *, masked: bool = True) -> Stitched:
        """Averaged predictions of one (session, readout).

        ``masked`` keeps only samples in the eval mask (the ones R^2 counts); otherwise all
        samples inside the evaluated intervals are returned with their mask.
        """
        parts = self._parts.get((session_id, readout), [])
        if not parts:
            raise KeyError(f"no predictions recorded for session '{session_id}', readout '{readout}'")
        t = np.concatenate([p[0] for p in parts])
        pred = np.concatenate([p[1] for p in parts]).astype(np.float64)
        targ = np.concatenate([p[2] for p in parts]).astype(np.float64)
        mask = np.concatenate([p[3] for p in parts])

        order = np.argsort(t, kind="stable")
        t, pred, targ, mask = t[order], pred[order], targ[order], mask[order]
        # A new sample starts wherever the time jumps by more than the tolerance.
        new = np.concatenate([[True], np.diff(t) > self.tolerance])
        group = np.cumsum(new) - 1
        n = int(group[-1]) + 1
        counts = np.bincount(group, minlength=n)
        first = np.flatnonzero(new)
        sums_p = np.zeros((n, pred.shape[1]))
        sums_t = np.zeros((n, targ.shape[1]))
        np.add.at(sums_p, group, pred)
        np.add.at(sums_t, group, targ)
        mean_p = sums_p / counts[:, None]
        mean_t = sums_t / counts[:, None]
        times = t[first]
        # A sample counts only if every window that saw it agreed it is evaluable.
        eval_mask = np.bincount(group, weights=mask.astype(np.float64), minlength=n) == counts

        keep = np.ones(n, dtype=bool)
        if session_id in self.intervals:
            keep &= self.intervals[session_id].contains(times)
        if masked:
            keep &= eval_mask
        mean_p, mean_t = mean_p[keep], mean_t[keep]
        if readout in self.normalization:
            m, s = (np.asarray(a, dtype=np.float64).reshape(1, -1) for a in self.normalization[readout])
            mean_p, mean_t = mean_p * s + m, mean_t * s + m
        return Stitched(
            timestamps=times[keep],
            predictions=mean_p.astype(np.float32),
            targets=mean_t.astype(np.float32),
            eval_mask=eval_mask[keep],
            counts=counts[keep].astype(np.int64),
        )

    def results(self, *, masked: bool = True) -> dict[tuple[str, str], Stitched]:
        """Every recorded (session, readout)."""
        return {k: self.result(*k, masked=masked) for k in self.keys()}

    def reset(self) -> None:
        self._parts.clear()
