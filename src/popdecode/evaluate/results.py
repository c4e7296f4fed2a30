"""The per-session results table shared by ``evaluate``, ``baseline``, ``adapt`` and ``report``.

One row per (session, readout): the method, the split, R^2 and the number of evaluation
timestamps. Saved as CSV (for people and spreadsheets) beside a JSON copy (for code).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from popdecode.utils.atomic import atomic_path

FIELDS = ("method", "split", "session", "readout", "r2", "n_timestamps")


def variant_suffix(*, causal: bool, delay: float = 0.0) -> str:
    """What ``evaluate`` appends to ``results_<split>`` and ``predictions_<split>``: "" for
    stitched, "_causal", or "_causal_delay<ms>ms" (e.g. "_causal_delay50ms" for 0.05 s)."""
    if not causal:
        return ""
    return f"_causal_delay{delay * 1e3:g}ms" if delay else "_causal"


@dataclass
class ResultRow:
    method: str  # e.g. "poyo", "wiener", "mlp", "gru", "unit-id (10 trials)"
    split: str  # "valid" or "test"
    session: str
    readout: str
    r2: float
    n_timestamps: int


def mean_r2(rows: list[ResultRow]) -> float:
    """Mean R^2 over sessions (each session's readouts averaged first)."""
    per_session: dict[str, list[float]] = {}
    for r in rows:
        if not math.isnan(r.r2):
            per_session.setdefault(r.session, []).append(r.r2)
    if not per_session:
        return float("nan")
    return sum(sum(v) / len(v) for v in per_session.values()) / len(per_session)


def format_table(rows: list[ResultRow]) -> str:
    """A plain-text table with a mean row, as printed by the commands."""
    lines = [f"{'session':<28} {'readout':<12} {'method':<20} {'split':<6} {'R^2':>8} {'n':>8}"]
    for r in rows:
        lines.append(
            f"{r.session:<28} {r.readout:<12} {r.method:<20} {r.split:<6} {r.r2:>8.4f} {r.n_timestamps:>8d}"
        )
    methods = sorted({r.method for r in rows})
    for m in methods:
        sel = [r for r in rows if r.method == m]
        lines.append(f"{'mean over sessions':<28} {'':<12} {m:<20} {sel[0].split:<6} {mean_r2(sel):>8.4f}")
    return "\n".join(lines)


def write_results(path_csv: str | Path, rows: list[ResultRow]) -> None:
    """Write ``rows`` to ``path_csv`` and the same rows to ``path_csv`` with ``.json``, atomically."""
    path_csv = Path(path_csv)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    with atomic_path(path_csv) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(path_csv.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


def read_results(path: str | Path) -> list[ResultRow]:
    """Read a results CSV or JSON written by :func:`write_results`."""
    path = Path(path)
    if path.suffix == ".json":
        return [ResultRow(**d) for d in json.loads(path.read_text())]
    with path.open() as f:
        return [
            ResultRow(
                method=d["method"], split=d["split"], session=d["session"], readout=d["readout"],
                r2=float(d["r2"]), n_timestamps=int(d["n_timestamps"]),
            )
            for d in csv.DictReader(f)
        ]
