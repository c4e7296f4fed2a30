"""The one place where a session is checked before it enters a store.

Every importer and :func:`popdecode.data.store.write_session` pass sessions through
:func:`clean_session`. It sorts what can be sorted, drops what cannot be used and refuses
what cannot be repaired:

refused (:class:`~popdecode.errors.UserError`)
    duplicate unit ids, spike unit indices outside the unit table, a target that names no
    series, a series whose timestamps and values disagree.
accepted with one warning line each, counting what was done
    spikes not in time order (sorted), spikes with a non-finite time (dropped), spikes
    outside the observation intervals (dropped), units without spikes (kept, so that unit
    indices keep matching the source), NaN in a behaviour series (kept as NaN: later stages
    mask those samples out of training and evaluation), behaviour timestamps not in order
    (sorted), behaviour samples with a non-finite timestamp (dropped).

A spike slightly before the first behaviour sample is normal and not reported: the
observation intervals (the session's ``domain``), not the behaviour, bound the spikes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter

import numpy as np

from popdecode.data.session import Series, Session
from popdecode.errors import UserError


def finite_in_order(times: np.ndarray) -> tuple[np.ndarray | None, int, int]:
    """How to make ``times`` finite and sorted: ``(keep, dropped, moved)``.

    ``keep`` indexes ``times`` (and whatever travels with them) so that the result holds the
    finite times in stable time order; it is None when nothing needs to change. ``dropped``
    counts non-finite times, ``moved`` the finite ones that change place when sorted.
    """
    finite = np.isfinite(times)
    keep = None if finite.all() else np.flatnonzero(finite)
    kept = times if keep is None else times[keep]
    moved = 0
    if len(kept) > 1 and np.any(np.diff(kept) < 0):
        order = np.argsort(kept, kind="stable")
        moved = int(np.count_nonzero(order != np.arange(len(order))))
        keep = order if keep is None else keep[order]
    return keep, int((~finite).sum()), moved


def clean_session(session: Session) -> tuple[Session, list[str]]:
    """A checked copy of ``session`` and the warning lines describing what was changed.

    Raises :class:`UserError` for problems that cannot be repaired. Running it on its own
    output changes nothing (only the "units without spikes" note repeats).
    """
    sid = session.id
    notes: list[str] = []
    if not sid or "/" in sid or sid in (".", ".."):
        raise UserError(f"invalid session id {sid!r}: use a non-empty name without '/'")

    # Units ---------------------------------------------------------------------------
    counts = Counter(session.unit_ids)
    dupes = sorted(u for u, c in counts.items() if c > 1)
    if dupes:
        shown = ", ".join(repr(u) for u in dupes[:5]) + (", ..." if len(dupes) > 5 else "")
        raise UserError(
            f"session {sid}: duplicate unit ids {shown} ({len(dupes)} ids appear more than once); "
            "unit ids must be unique within a session: fix the units table of the source file"
        )
    for col, vals in session.unit_info.items():
        if len(vals) != session.num_units:
            raise UserError(
                f"session {sid}: unit column {col!r} has {len(vals)} rows for {session.num_units} units"
            )

    # Spikes --------------------------------------------------------------------------
    times, units = session.spike_times, session.spike_units
    if len(units) and (units.min() < 0 or units.max() >= session.num_units):
        raise UserError(
            f"session {sid}: spike unit indices run from {units.min()} to {units.max()} "
            f"but there are {session.num_units} units; each spike must name a row of the unit table"
        )
    keep, dropped, moved = finite_in_order(times)
    if dropped:
        notes.append(f"session {sid}: dropped {dropped} spikes with a non-finite time")
    if moved:
        notes.append(f"session {sid}: {moved} spikes were not in time order; sorted them")
    if keep is not None:
        times, units = times[keep], units[keep]
    domain = session.domain
    if len(domain):
        inside = domain.contains(times)
        if not inside.all():
            notes.append(
                f"session {sid}: dropped {int((~inside).sum())} spikes outside the observation intervals"
            )
            times, units = times[inside], units[inside]
    silent = session.num_units - len(np.unique(units))
    if silent:
        notes.append(f"session {sid}: {silent} of {session.num_units} units have no spikes (kept)")

    # Behaviour -----------------------------------------------------------------------
    series: dict[str, Series] = {}
    for name, s in session.series.items():
        ts, vals = s.timestamps, s.values
        if len(ts) != len(vals):
            raise UserError(f"session {sid}: series {name!r} has {len(ts)} timestamps but {len(vals)} samples")
        keep, dropped, moved = finite_in_order(ts)
        if dropped:
            notes.append(f"session {sid}: series {name!r}: dropped {dropped} samples with a non-finite timestamp")
        if moved:
            notes.append(f"session {sid}: series {name!r} timestamps were not in order; sorted {len(ts) - dropped} samples")
        if keep is not None:
            ts, vals = ts[keep], vals[keep]
        nan_rows = int(np.isnan(vals).any(axis=1).sum()) if vals.size else 0
        if nan_rows:
            notes.append(
                f"session {sid}: series {name!r} has {nan_rows} samples with NaN "
                "(kept; masked out of training and evaluation)"
            )
        series[name] = Series(ts, vals, columns=list(s.columns), unit=s.unit)
    missing = [t for t in session.targets if t not in series]
    if missing:
        raise UserError(
            f"session {sid}: target series {', '.join(missing)} not found; "
            f"the session has: {', '.join(series) or 'no series'}"
        )

    cleaned = dataclasses.replace(session, spike_times=times, spike_units=units, series=series)
    return cleaned, notes


def emit_warnings(lines: list[str]) -> None:
    """Print each warning as one line on stderr."""
    for line in lines:
        print(f"popdecode: warning: {line}", file=sys.stderr)
