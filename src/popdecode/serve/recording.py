"""What a live session decoded and when, beside the true behaviour: ``--record FILE``.

A :class:`Recording` keeps every decoded tick (its time, values, when its sample was pushed,
when the newest spike it used arrived, the time inside ``decode_window``, the spike tokens)
and, when a truth stream is recorded, every true sample with its eval flag (the last channel
of ``popdecode replay``'s behaviour stream: 1 where ``popdecode evaluate`` would score it).

Scoring (:meth:`Recording.score`): decoded samples come at the serving rate (50 Hz), true
samples at the recording's own times. Each true sample flagged for evaluation gets the decoded
value linearly interpolated between the two ticks around it, when both exist and lie at most
0.25 s apart (a skipped tick is bridged, a gap while the input was lost is not); R^2 is
computed over those samples, as ``evaluate`` does (mean over dimensions). Interpolating reads
the tick after a sample, up to one tick period later; ``held=True`` scores instead what task
software holds at each sample: the newest tick already pushed (latency and tick spacing
included), at most 0.25 s old.

Files are HDF5 (``decoded/*``, ``truth/*``, attributes for the run), written to a temporary
file and renamed.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from popdecode.errors import UserError
from popdecode.evaluate.metrics import r2_score
from popdecode.utils.atomic import atomic_path

_TICK_FIELDS = ("time", "pushed", "arrival", "model_s", "tokens")


class Recording:
    """Decoded ticks and true samples, appended as they come."""

    def __init__(self, *, columns: list[str], attrs: dict | None = None):
        self.columns = list(columns)
        self.attrs = dict(attrs or {})
        self._ticks: dict[str, list] = {k: [] for k in _TICK_FIELDS}
        self._values: list[np.ndarray] = []
        self._truth_t: list[np.ndarray] = []
        self._truth_v: list[np.ndarray] = []

    # -- appending ------------------------------------------------------------------------
    def add_tick(self, t: float, values: np.ndarray, *, pushed: float = np.nan, arrival: float | None = None,
                 model_s: float = np.nan, tokens: int = -1) -> None:
        for k, v in zip(_TICK_FIELDS, (t, pushed, np.nan if arrival is None else arrival, model_s, tokens)):
            self._ticks[k].append(v)
        self._values.append(np.asarray(values, dtype=np.float32).reshape(-1))

    def add_truth(self, timestamps: np.ndarray, values: np.ndarray) -> None:
        if len(timestamps):
            self._truth_t.append(np.asarray(timestamps, dtype=np.float64).reshape(-1))
            self._truth_v.append(np.asarray(values, dtype=np.float32).reshape(len(timestamps), -1))

    # -- reading --------------------------------------------------------------------------
    @property
    def ticks(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.int64 if k == "tokens" else np.float64) for k, v in self._ticks.items()}

    @property
    def decoded(self) -> np.ndarray:
        return np.stack(self._values) if self._values else np.zeros((0, len(self.columns)), np.float32)

    @property
    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps [n], values [n, D + 1]) sorted by time; the last column is the eval flag."""
        if not self._truth_t:
            return np.zeros(0), np.zeros((0, len(self.columns) + 1), np.float32)
        t, v = np.concatenate(self._truth_t), np.concatenate(self._truth_v)
        order = np.argsort(t, kind="stable")
        return t[order], v[order]

    # -- scoring --------------------------------------------------------------------------
    def matched(self, *, max_gap: float = 0.25, held: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times, true values, decoded values at them) of the flagged samples: interpolated
        between ticks, or with ``held`` the newest tick pushed by then (see the module docstring)."""
        ticks, dec = self.ticks, self.decoded
        t_dec, t_true, truth = ticks["time"], *self.truth
        if len(t_dec) < 2 or len(t_true) == 0:
            return np.zeros(0), np.zeros((0, len(self.columns))), np.zeros((0, len(self.columns)))
        order = np.argsort(t_dec, kind="stable")
        t_dec, dec = t_dec[order], dec[order]
        flagged = truth[:, -1] > 0.5
        if held:
            # Ticks are pushed in order; a tick with no push time counts as pushed when it decodes.
            pushed = np.maximum.accumulate(np.where(np.isfinite(ticks["pushed"]), ticks["pushed"], ticks["time"])[order])
            last = np.searchsorted(pushed, t_true, side="right") - 1
            keep = flagged & (last >= 0) & (t_true - t_dec[np.maximum(last, 0)] <= max_gap)
            return t_true[keep], truth[keep, :-1], dec[last[keep]]
        right = np.searchsorted(t_dec, t_true, side="left")
        inside = (right > 0) & (right < len(t_dec))
        r, l_ = np.clip(right, 1, len(t_dec) - 1), np.clip(right - 1, 0, len(t_dec) - 2)
        close = inside & (t_dec[r] - t_dec[l_] <= max_gap)
        keep = flagged & close
        pred = np.stack([np.interp(t_true[keep], t_dec, dec[:, d]) for d in range(dec.shape[1])], axis=1)
        return t_true[keep], truth[keep, :-1], pred

    def score(self, *, held: bool = False) -> tuple[float, int]:
        """(R^2, number of samples scored); NaN when nothing could be scored. ``held``: as
        :meth:`matched`."""
        _, y, yhat = self.matched(held=held)
        if len(y) < 2:
            return float("nan"), len(y)
        with np.errstate(over="ignore", divide="ignore"):
            return r2_score(y, yhat), len(y)

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        ticks, t_true, truth = self.ticks, *self.truth
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = "popdecode-recording"
                f.attrs["columns"] = np.array(self.columns, dtype=object)
                for k, v in self.attrs.items():
                    f.attrs[k] = v
                g = f.create_group("decoded")
                for k, v in ticks.items():
                    g.create_dataset(k, data=v)
                g.create_dataset("values", data=self.decoded)
                g = f.create_group("truth")
                g.create_dataset("time", data=t_true)
                g.create_dataset("values", data=truth)

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != "popdecode-recording":
                    raise UserError(f"{path} is not a popdecode recording (written by serve/listen --record)")
                columns = [c.decode() if isinstance(c, bytes) else str(c) for c in f.attrs["columns"]]
                rec = cls(columns=columns, attrs={k: f.attrs[k] for k in f.attrs if k not in ("format", "columns")})
                for k in _TICK_FIELDS:
                    rec._ticks[k] = list(f["decoded"][k][()])
                rec._values = list(f["decoded/values"][()])
                rec.add_truth(f["truth/time"][()], f["truth/values"][()])
        except OSError as err:
            raise UserError(f"cannot read recording {path} ({err}); record it again") from None
        return rec

    def figure(self, path: str | Path, *, seconds: float = 20.0) -> None:
        """Decoded against true values over the first ``seconds`` of scored samples, one panel
        per dimension (PNG, written atomically)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t, y, yhat = self.matched()
        if len(t) == 0:
            raise UserError("nothing to plot: the recording holds no true samples matched to decoded ones; "
                            "record with --truth (the behaviour stream of popdecode replay)")
        # Stream time is continuous across replayed segments; show the first `seconds` of it.
        sel = t < t[0] + seconds
        r2, n = self.score()
        fig, axes = plt.subplots(len(self.columns), 1, figsize=(9, 2.2 * len(self.columns)), sharex=True, squeeze=False)
        for d, ax in enumerate(axes[:, 0]):
            ax.plot(t[sel] - t[0], y[sel, d], ".", ms=3, color="0.3", label="recorded")
            ax.plot(t[sel] - t[0], yhat[sel, d], ".", ms=3, color="C0", label="decoded live")
            ax.set_ylabel(self.columns[d])
        axes[0, 0].legend(loc="upper right", frameon=False, ncol=2)
        axes[0, 0].set_title(f"decoded live against recorded (R^2 {r2:.3f} over {n} samples)")
        axes[-1, 0].set_xlabel("stream time (s), evaluated samples only")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
