"""A trained model fed spikes as they arrive, asked for behaviour now: :class:`OnlineDecoder`.

Offline, a window's tokens come from a file; online they come from a stream. The decoder
keeps the spikes of the last window (:class:`~popdecode.serve.spike_buffer.SpikeBuffer`) and,
at ``decode(t)``, builds exactly the tokens the tokenizer builds for the window
[t - window, t) of a recorded session (every unit of the session as two delimiter tokens, then
the spikes in time order) and answers the one query at the window's end, t. That is the causal
window ``popdecode evaluate --causal`` scores, so an R^2 measured offline is the R^2 a live
session gets (``benchmarks/serve_replay.py`` checks it through LSL). With a ``delay`` d it
answers the query at t - d instead: each sample reported d seconds late, from a window that
holds the d seconds after it (``evaluate --causal --delay d`` scores the same).

It knows nothing of transports: ``push(times, units)`` with times on any clock (the LSL clock
for ``popdecode serve``) and units as indices into :attr:`OnlineDecoder.unit_ids`. Whatever
cannot be used (unknown units, NaN times, spikes already older than the window, duplicates,
a burst beyond the buffer) is dropped and counted in :attr:`OnlineDecoder.dropped`; nothing
raises inside a live loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from popdecode.errors import UserError
from popdecode.serve.spike_buffer import SpikeBuffer, strictly_increasing
from popdecode.tokenize.batch import SPIKE, UNIT_END, UNIT_START


class OnlineDecoder:
    """Causal decoding of one session of ``model`` from a live spike stream.

    Args:
        model: a POYO (eval mode is set here); :meth:`~popdecode.model.POYO.compile_for_inference`
            beforehand makes each decode faster.
        session: the session id, as the model knows it (``popdecode adapt`` adds new ones).
        normalization (keyword-only): readout -> (mean, std) from the run's ``model.json``, to
            return values in the recorded units; None returns the model's normalised output.
        readout: which readout to decode (default: the session's first).
        window: seconds of spikes each decode sees (default: the model's window length;
            other values are untested territory for a trained model).
        capacity: spikes held at most (a burst beyond it drops the oldest, counted).
        delay: seconds, in [0, window): ``decode(t)`` answers the readout at t - delay (default 0).
    """

    def __init__(self, model, session: str, *, normalization: dict | None = None, readout: str | None = None,
                 session_readouts: dict | None = None, window: float | None = None, capacity: int = 1 << 18,
                 delay: float = 0.0):
        self.model = model.eval()
        if session not in model.session_vocab:
            known = model.session_vocab.names
            raise UserError(f"session '{session}' is not in the model (it knows {len(known)}: "
                            f"{', '.join(known[:6])}{', ...' if len(known) > 6 else ''}); adapt it first (popdecode adapt)")
        self.session = session
        prefix = f"{session}/"
        names = [n for n in model.unit_vocab.names if n.startswith(prefix)]
        self.unit_ids: list[str] = [n[len(prefix):] for n in names]
        self._rows = model.unit_vocab.index(names).astype(np.int64)
        self._session_row = int(model.session_vocab.index([session])[0])
        supervised = (session_readouts or {}).get(session) or model.readout_names
        self.readout = readout or supervised[0]
        if self.readout not in model.readout_names:
            raise UserError(f"readout '{self.readout}' is not one of the model's: {', '.join(model.readout_names)}")
        self.window = float(window if window is not None else model.config.window_length)
        if not self.window > 0:
            raise UserError(f"the decoding window must be positive seconds (got {self.window})")
        self.delay = float(delay)
        if not 0 <= self.delay < self.window:
            raise UserError(f"--delay must be at least 0 and shorter than the {self.window:g} s window (got {delay:g})")
        mean, std = (normalization or {}).get(self.readout, (None, None))
        self._mean = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)
        self._std = None if std is None else np.asarray(std, dtype=np.float32).reshape(-1)
        self.dim = int(model.readout_dims[self.readout])

        # Every unit's two delimiters open every window (the tokenizer's order): fixed arrays.
        n = len(self._rows)
        self._delim_units = np.repeat(self._rows, 2)
        self._delim_types = np.tile(np.array([UNIT_START, UNIT_END], dtype=np.int64), n)
        self._delim_times = np.tile(np.array([0.0, self.window], dtype=np.float32), n)
        self.buffer = SpikeBuffer(capacity=capacity)
        # A window's tokens are written into these (delimiters first, then up to `capacity`
        # spikes) instead of concatenated anew at every tick.
        self._token_units = np.concatenate([self._delim_units, np.zeros(self.buffer.capacity, np.int64)])
        self._token_types = np.concatenate([self._delim_types, np.full(self.buffer.capacity, SPIKE, np.int64)])
        self._token_times = np.concatenate([self._delim_times, np.zeros(self.buffer.capacity, np.float32)])
        self._device = model.omega.device
        self._query_time = torch.tensor([self.window - self.delay], dtype=torch.float32, device=self._device)

        self._horizon = -np.inf  # spikes earlier than this can no longer enter any window
        self.received = 0
        self._dropped = {"unknown_unit": 0, "invalid_time": 0, "too_old": 0}
        self.last_tokens = 0  # spike tokens of the last decode
        self.last_model_s = 0.0  # seconds inside model.decode_window in the last decode

    @classmethod
    def from_run(cls, run_dir: str | Path, session: str, *, device: str = "cpu", **kwargs) -> "OnlineDecoder":
        """The decoder of ``session`` from a run directory (``model.safetensors`` + ``model.json``)."""
        from popdecode.model.io import load_model
        from popdecode.train.setup import normalization_from_meta

        model, meta = load_model(run_dir, device=device)
        kwargs.setdefault("normalization", normalization_from_meta(meta))
        kwargs.setdefault("session_readouts", meta.get("session_readouts"))
        return cls(model, session, **kwargs)

    @property
    def dropped(self) -> dict[str, int]:
        """Spikes dropped so far, by reason."""
        return {**self._dropped, "duplicate": self.buffer.duplicates, "overflow": self.buffer.overflowed}

    def push(self, times, units) -> int:
        """Add spikes: ``times`` in seconds on the stream's clock, ``units`` indices into
        :attr:`unit_ids`; any order. Returns how many were kept."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        units = np.asarray(units).reshape(-1)
        if len(times) != len(units):
            raise ValueError(f"push: {len(times)} times but {len(units)} units")
        self.received += len(times)
        if len(times) == 0:
            return 0
        # A rig's chunk (in time order, every spike usable) is recognised from its ends and its
        # units' extremes, a few calls whatever its length; anything else takes the masks below,
        # which count each reason a spike is dropped.
        increasing = strictly_increasing(times)
        if not (increasing and units.dtype.kind in "iu" and -np.inf < times[0] and times[0] >= self._horizon
                and times[-1] < np.inf and units.min() >= 0 and units.max() < len(self._rows)):
            times, units = self._usable(times, units)
            increasing = None
        duplicates = self.buffer.duplicates
        self.buffer.add(times, units.astype(np.int64, copy=False), increasing=increasing)
        return len(times) - (self.buffer.duplicates - duplicates)

    def _usable(self, times: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The spikes of a chunk that can enter a window; the others counted by reason."""
        unit_ok = (units >= 0) & (units < len(self._rows))
        if units.dtype.kind == "f":  # e.g. a float channel: only exact integers name a unit
            unit_ok &= np.isfinite(units) & (np.floor(units) == units)
        elif units.dtype.kind not in "iu":
            unit_ok[:] = False
        time_ok = np.isfinite(times)
        fresh = times >= self._horizon
        keep = unit_ok & time_ok & fresh
        self._dropped["unknown_unit"] += int((~unit_ok).sum())
        self._dropped["invalid_time"] += int((unit_ok & ~time_ok).sum())
        self._dropped["too_old"] += int((unit_ok & time_ok & ~fresh).sum())
        return times[keep], units[keep]

    def tokens(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The window [t - window, t) as (unit rows, token types, times since its start):
        views that the next call overwrites (copy them to keep them)."""
        t0 = t - self.window
        # Spikes before the horizon were forgotten; if t went back, the window starts there.
        self._horizon = max(self._horizon, t0)
        times, units = self.buffer.advance(self._horizon, t)
        self.last_tokens = len(times)
        a, b = len(self._delim_units), len(self._delim_units) + len(times)
        np.take(self._rows, units, out=self._token_units[a:b], mode="clip")  # units are valid rows: no check
        np.subtract(times, t0, out=self._token_times[a:b], casting="same_kind")
        return self._token_units[:b], self._token_types[:b], self._token_times[:b]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # from_numpy shares the arrays' memory; on the CPU a .to() would only be one more call
        # per tensor per tick, and each call counts at 50 Hz.
        tensor = torch.from_numpy(array)
        return tensor if self._device.type == "cpu" else tensor.to(self._device)

    def warm_up(self, repeats: int = 3) -> None:
        """Run the model a few times on a window of delimiters only (the first calls fold the
        weights and, compiled, specialise the code), leaving the stream state untouched."""
        args = dict(input_units=self._tensor(self._delim_units), input_types=self._tensor(self._delim_types),
                    input_times=self._tensor(self._delim_times), session_index=self._session_row,
                    output_times=self._query_time, readout=self.readout)
        for _ in range(repeats):
            self.model.decode_window(**args)

    def decode(self, t: float) -> np.ndarray:
        """float32 [dim]: the readout at time ``t - delay`` from the spikes of [t - window, t) alone."""
        units, types, times = self.tokens(float(t))
        started = time.perf_counter()
        out = self.model.decode_window(
            input_units=self._tensor(units), input_types=self._tensor(types), input_times=self._tensor(times),
            session_index=self._session_row, output_times=self._query_time, readout=self.readout,
        )
        y = out.to("cpu", torch.float32).numpy()[0]
        self.last_model_s = time.perf_counter() - started
        if self._std is not None:
            y = y * self._std + self._mean
        return y
