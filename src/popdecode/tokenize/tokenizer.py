"""From a session and a window start to the model's tokens (spec section 1).

POYO reads a window of spikes as a set of tokens and answers queries at the behaviour
timestamps inside the same window:

- **Inputs.** Every unit of the session (after unit dropout) contributes two delimiter
  tokens, UNIT_START at t = 0 and UNIT_END at t = window length, so that a unit that stays
  silent is still seen. Every spike of a kept unit is one SPIKE token at its time since the
  window start. Units are rows of the model's global unit table (``unit_rows``), never local
  indices: unit 3 of one session and unit 3 of another are different neurons. The order is
  the reference's: delimiters first, [u0 start, u0 end, u1 start, u1 end, ...] in the
  session's unit order, then the spikes in time order.
- **Outputs.** One query per behaviour sample of each readout the session supervises. The
  target is the sample normalised with the readout's (mean, std); its loss weight comes from
  the movement phase it falls in (``loss_weights``); it counts in R^2 when it lies in the
  session's ``eval`` intervals. Missing samples (NaN) get weight 0, are left out of R^2 and
  are set to 0 so that nothing downstream sees a NaN.

Everything is vectorised over spikes, units and samples: the tokenizer runs once per
training window, thousands of times per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from popdecode.data.session import interpolate_at, values_at
from popdecode.errors import UserError
from popdecode.tokenize.batch import SPIKE, UNIT_END, UNIT_START, ReadoutTargets, TokenizedWindow
from popdecode.tokenize.unit_dropout import keep_units


def _default_loss_weights() -> dict[str, float]:
    # Center-out phases (spec section 4): the reach is what is evaluated, so it weighs most.
    return {"hold": 0.1, "reach": 5.0, "return": 1.0, "outlier": 0.0}


@dataclass
class TokenizerConfig:
    window_length: float = 1.0  # seconds
    # Interval-set name -> loss weight. Sets apply in this order, a later one overriding an
    # earlier one, except that a weight of 0 (outliers) always wins. Timestamps outside every
    # listed set weigh 1.0; sets the session does not have are skipped.
    loss_weights: dict[str, float] = field(default_factory=_default_loss_weights)
    unit_dropout: bool = False  # applied only when the caller passes an rng (training)
    min_units: int = 30  # sessions with fewer units keep them all
    mode_units: int = 100
    max_units: int = 300
    dropout_peak: float = 4.0  # triangle height at the mode relative to its ends (reference: 4)
    dropout_scale: float = 10.0  # the reference's rejection-sampling bound (sets the real shape)
    # Training only: this many extra queries per readout on an even grid over the window's
    # last ``end_span`` seconds (the last one at its very end), answered by the behaviour
    # interpolated between the recorded samples around each. A real-time decoder reads every window at its end alone, where a
    # plain training window has few samples and no later spikes to lean on.
    end_queries: int = 0
    end_span: float = 0.1
    # Training only: the end queries replace the window's recorded samples (every query is
    # where a live decoder reads), instead of joining them.
    end_only: bool = False


class Tokenizer:
    """Turns ``(session, t0)`` into a :class:`TokenizedWindow` for one model's vocabularies.

    Args (keyword-only):
        unit_rows: session id -> int array, ``[local unit index] -> row`` of the unit table.
        session_rows: session id -> row of the session table.
        readouts: the model's readout names; index in this list = ``output_readout``.
        normalization: readout -> (mean [D], std [D]); targets become (value - mean) / std.
        session_readouts: session id -> the readouts that session supervises.
        config: :class:`TokenizerConfig`.
    """

    def __init__(
        self,
        *,
        unit_rows: dict[str, np.ndarray],
        session_rows: dict[str, int],
        readouts: list[str],
        normalization: dict[str, tuple[np.ndarray, np.ndarray]],
        session_readouts: dict[str, list[str]],
        config: TokenizerConfig | None = None,
    ):
        self.config = config or TokenizerConfig()
        self.unit_rows = {k: np.asarray(v, dtype=np.int64) for k, v in unit_rows.items()}
        self.session_rows = {k: int(v) for k, v in session_rows.items()}
        self.readouts = list(readouts)
        self.readout_index = {name: i for i, name in enumerate(self.readouts)}
        self.normalization = {}
        for name, (mean, std) in normalization.items():
            mean = np.asarray(mean, dtype=np.float32).reshape(-1)
            std = np.asarray(std, dtype=np.float32).reshape(-1)
            if np.any(~np.isfinite(std)) or np.any(std <= 0):
                raise UserError(f"normalization std of readout '{name}' must be positive and finite; recompute it from the training data")
            self.normalization[name] = (mean, std)
        self.session_readouts = {}
        for sid, names in session_readouts.items():
            unknown = [n for n in names if n not in self.readout_index]
            if unknown:
                raise UserError(f"session '{sid}' supervises {unknown}, which are not model readouts {self.readouts}; add them to the model or drop them")
            missing = [n for n in names if n not in self.normalization]
            if missing:
                raise UserError(f"readouts {missing} of session '{sid}' have no normalization (mean, std); compute them from the training data")
            # Model readout order, so that a window's queries do not depend on listing order.
            self.session_readouts[sid] = sorted(names, key=self.readout_index.__getitem__)

    # ------------------------------------------------------------------------------------
    def __call__(self, session, t0: float, *, rng: np.random.Generator | None = None,
                 queries: dict[str, np.ndarray] | None = None) -> TokenizedWindow:
        """The tokens of the window [t0, t0 + window_length) of ``session``.

        ``queries``: readout -> absolute times to answer instead of the behaviour samples
        inside the window (causal evaluation asks for the sample at the window's end, which a
        half-open window does not contain). Targets come from the recorded sample at each
        time (NaN, so weight 0 and out of R^2, where there is none); readouts not listed get
        no queries.
        """
        cfg = self.config
        sid = session.id
        if sid not in self.unit_rows or sid not in self.session_rows:
            raise UserError(f"session '{sid}' is not in the model's vocabulary; register its units and session first")
        rows = self.unit_rows[sid]
        num_units = len(session.unit_ids)
        if len(rows) != num_units:
            raise UserError(f"session '{sid}' has {num_units} units but the model maps {len(rows)}; re-register the session")
        names = self.session_readouts.get(sid, [])
        if queries is not None:
            unknown = [n for n in queries if n not in names]
            if unknown:
                raise UserError(f"session '{sid}' does not supervise {unknown}; it decodes {names}")
            names = [n for n in names if n in queries]
        length = float(cfg.window_length)
        t0 = float(t0)
        win = session.window(t0, t0 + length, series=[] if queries is not None else names)

        # -- which units this window sees ------------------------------------------------
        spike_units = win.spike_units
        spike_times = win.spike_times
        if rng is not None and cfg.unit_dropout:
            kept = keep_units(
                num_units,
                rng,
                min_units=cfg.min_units,
                mode_units=cfg.mode_units,
                max_units=cfg.max_units,
                peak=cfg.dropout_peak,
                scale=cfg.dropout_scale,
            )
            if len(kept) < num_units:
                keep_mask = np.zeros(num_units, dtype=bool)
                keep_mask[kept] = True
                on = keep_mask[spike_units]
                spike_units, spike_times = spike_units[on], spike_times[on]
        else:
            kept = np.arange(num_units)

        # -- input tokens: delimiters (unit order) then spikes (time order) ----------------
        n_kept, n_spikes = len(kept), len(spike_units)
        input_units = np.empty(2 * n_kept + n_spikes, dtype=np.int64)
        input_types = np.empty_like(input_units)
        input_times = np.empty(len(input_units), dtype=np.float32)
        input_units[: 2 * n_kept] = np.repeat(rows[kept], 2)
        input_types[0 : 2 * n_kept : 2] = UNIT_START
        input_types[1 : 2 * n_kept : 2] = UNIT_END
        input_times[0 : 2 * n_kept : 2] = 0.0
        input_times[1 : 2 * n_kept : 2] = length
        input_units[2 * n_kept :] = rows[spike_units]
        input_types[2 * n_kept :] = SPIKE
        input_times[2 * n_kept :] = spike_times

        # -- output queries and targets ----------------------------------------------------
        out_times, out_readout, targets = [], [], {}
        offset = 0
        intervals = session.intervals
        eval_set = intervals.get("eval")
        for name in names:
            if queries is None:
                times, values = win.series[name]
                if rng is not None and cfg.end_queries > 0:
                    end = np.linspace(length - cfg.end_span, length, cfg.end_queries)
                    end_values = interpolate_at(session.series[name], end + t0)
                    if cfg.end_only:
                        times, values = end, end_values
                    else:
                        times, values = np.concatenate([times, end]), np.concatenate([values, end_values])
                absolute = times + t0
            else:
                absolute = np.asarray(queries[name], dtype=np.float64).reshape(-1)
                times, values = absolute - t0, values_at(session.series[name], absolute)
            m = len(times)
            finite = np.isfinite(values).all(axis=1)
            mean, std = self.normalization[name]
            normed = (values.astype(np.float32) - mean) / std
            normed[~finite] = 0.0
            weights = loss_weights_at(intervals, absolute, self.config.loss_weights)
            weights[~finite] = 0.0
            in_eval = eval_set.contains(absolute) if eval_set is not None else np.ones(m, dtype=bool)
            targets[name] = ReadoutTargets(
                index=np.arange(offset, offset + m, dtype=np.int64),
                values=normed.astype(np.float32, copy=False),
                weights=weights,
                eval_mask=in_eval & finite,
            )
            out_times.append(times.astype(np.float32))
            out_readout.append(np.full(m, self.readout_index[name], dtype=np.int64))
            offset += m

        return TokenizedWindow(
            session_id=sid,
            session_index=self.session_rows[sid],
            window_start=t0,
            input_units=input_units,
            input_types=input_types,
            input_times=input_times,
            output_times=np.concatenate(out_times) if out_times else np.zeros(0, np.float32),
            output_readout=np.concatenate(out_readout) if out_readout else np.zeros(0, np.int64),
            targets=targets,
        )


def loss_weights_at(intervals: dict, times: np.ndarray, loss_weights: dict[str, float]) -> np.ndarray:
    """Per-sample loss weights at absolute ``times`` from the interval sets (movement phases):
    1 outside every weighted set; zero-weight sets (outliers) win over the others."""
    weights = np.ones(len(times), dtype=np.float32)
    excluded = np.zeros(len(times), dtype=bool)
    for set_name, w in loss_weights.items():
        phase = intervals.get(set_name)
        if phase is None or len(phase) == 0:
            continue
        inside = phase.contains(times)
        if w == 0:
            excluded |= inside
        else:
            weights[inside] = w
    weights[excluded] = 0.0
    return weights
