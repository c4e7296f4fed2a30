"""Adapt once per labelled-set size, compare with training from scratch, and write the curve.

For every value of ``--labelled-trials`` (e.g. 5, 10, 20, 50, all) :func:`run_points` starts
again from the pretrained run, adapts to the new sessions on that many trials, scores the
test split, and (when asked) trains a fresh model of the same shape on the same trials of
each session, scored the same way. The result is a list of :class:`CurvePoint` (one per
labelled-set size and session) and the per-session results rows.

Files (all in the output run directory; names in :data:`CURVE_CSV` etc.):

``learning_curve.csv`` / ``learning_curve.json``
    one row per (labelled-set size, session): ``mode``, ``requested`` (the value as given:
    ``10``, ``0.25``, ``60s``, ``all``), ``labelled_trials`` (trials, or for a value in seconds
    pieces of the train split, actually labelled), ``labelled_seconds`` (their length), ``session``,
    ``r2_adapt``, ``r2_scratch`` (empty / null when no scratch model was trained),
    ``seconds_adapt``, ``seconds_scratch`` (training time, evaluation excluded).
``learning_curve.png``
    test R^2 against labelled trials (labelled seconds when every value was given in seconds),
    one panel per session: adaptation solid, from scratch
    dashed, optional reference lines (e.g. single-session training on all trials) dotted.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from popdecode.adapt.adapt import AdaptConfig, adapt, evaluate_test, mean_session_r2, train_scratch
from popdecode.adapt.labelled import LabelledSpec, labelled_pieces
from popdecode.evaluate.results import ResultRow
from popdecode.model.io import load_model
from popdecode.utils.atomic import atomic_path

CURVE_CSV, CURVE_JSON, CURVE_PNG = "learning_curve.csv", "learning_curve.json", "learning_curve.png"
CURVE_FIELDS = ("mode", "requested", "labelled_trials", "labelled_seconds", "session", "r2_adapt",
                "r2_scratch", "seconds_adapt", "seconds_scratch")


@dataclass
class CurvePoint:
    mode: str
    requested: str
    labelled_trials: int
    session: str
    r2_adapt: float
    labelled_seconds: float | None = None
    r2_scratch: float | None = None
    seconds_adapt: float | None = None
    seconds_scratch: float | None = None


def run_points(
    run_dir: str | Path,
    sessions: Sequence,
    specs: Sequence[LabelledSpec],
    cfg: AdaptConfig,
    out_dir: str | Path,
    *,
    scratch: bool,
    log=print,
) -> tuple[list[CurvePoint], list[ResultRow], dict]:
    """Adapt (and train from scratch) for each spec; see the module docstring.

    Models go to ``out_dir/adapt/<spec>/<stage>/`` and ``out_dir/scratch/<spec>/<session>/``.
    Returns ``(points, result rows, info)``; ``info["last"]`` is the directory of the last
    adapted model, ``info[<spec>]`` the timings of each run.
    """
    out_dir = Path(out_dir)
    points: list[CurvePoint] = []
    rows: list[ResultRow] = []
    info: dict = {}
    for spec in specs:
        model, meta = load_model(run_dir)
        window_length = float(model.config.window_length)
        pieces = {s.id: labelled_pieces(s, spec, window_length) for s in sessions}
        counts = ", ".join(f"{sid} {len(p)}" for sid, p in pieces.items())
        log(f"[{spec.label}] {cfg.mode} on labelled trials ({counts})")
        work = out_dir / "adapt" / spec.label
        adapted, adapted_meta, adapt_info = adapt(model, meta, sessions, pieces, cfg, work)
        tag = f"{cfg.mode} ({spec.label})"
        adapt_rows = evaluate_test(adapted, adapted_meta, sessions, method=tag, cfg=cfg)
        rows += adapt_rows
        info[spec.label] = {"adapt": adapt_info, "scratch": {}}
        info["last"] = str(work / cfg.stages[-1][0])
        log(f"[{spec.label}] adapted in {adapt_info['seconds']:.0f} s: "
            + ", ".join(f"{s.id} R^2 {mean_session_r2(adapt_rows, s.id):.3f}" for s in sessions))
        if "rounds" in adapt_info:  # self-training: did the rounds help? (valid, never test)
            log(f"[{spec.label}] self-training, best valid R^2 of each round: "
                + " -> ".join(_valid_text(r) for r in adapt_info["rounds"]))
        for s in sessions:
            point = CurvePoint(mode=cfg.mode, requested=spec.label, labelled_trials=len(pieces[s.id]),
                               labelled_seconds=round(pieces[s.id].duration, 3), session=s.id,
                               r2_adapt=mean_session_r2(adapt_rows, s.id),
                               seconds_adapt=adapt_info["seconds"])
            if scratch:
                fresh, fresh_meta, fresh_info = train_scratch(adapted, s, pieces[s.id], cfg,
                                                              out_dir / "scratch" / spec.label / s.id)
                fresh_rows = evaluate_test(fresh, fresh_meta, [s], method=f"scratch ({spec.label})", cfg=cfg)
                rows += fresh_rows
                point.r2_scratch = mean_session_r2(fresh_rows, s.id)
                point.seconds_scratch = fresh_info["seconds"]
                info[spec.label]["scratch"][s.id] = fresh_info
                log(f"[{spec.label}] scratch on {s.id} in {fresh_info['seconds']:.0f} s: R^2 {point.r2_scratch:.3f}")
            points.append(point)
    return points, rows, info


def _valid_text(round_info: dict) -> str:
    """A round's best valid R^2 (of its last stage), or "-" without a valid split."""
    value = _number(list(round_info["stages"].values())[-1].get("best_valid_r2"))
    return "-" if value is None else f"{value:.3f}"


def _number(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def write_curve(out_dir: str | Path, points: Sequence[CurvePoint], *, references: dict[str, float] | None = None,
                title: str | None = None) -> None:
    """``learning_curve.csv``, ``.json`` and ``.png`` in ``out_dir`` (atomically, each)."""
    out_dir = Path(out_dir)
    records = [{k: _number(v) for k, v in asdict(p).items()} for p in points]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in CURVE_FIELDS})
    with atomic_path(out_dir / CURVE_CSV) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(out_dir / CURVE_JSON) as tmp:
        tmp.write_text(json.dumps(records, indent=2) + "\n")
    plot_curve(out_dir / CURVE_PNG, points, references=references, title=title)


def read_curve(path: str | Path) -> list[CurvePoint]:
    """The points of a ``learning_curve.json`` (NaN where the file has null)."""
    def value(v):
        return float("nan") if v is None else v
    out = []
    for r in json.loads(Path(path).read_text()):
        r = dict(r)
        r["r2_adapt"] = value(r["r2_adapt"])
        out.append(CurvePoint(**r))
    return out


def plot_curve(path: str | Path, points: Sequence[CurvePoint], *, references: dict[str, float] | None = None,
               title: str | None = None) -> None:
    """Test R^2 against labelled trials, one panel per session (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sessions = list(dict.fromkeys(p.session for p in points))
    in_seconds = bool(points) and all(p.requested.endswith("s") and p.labelled_seconds for p in points)

    def x(p):
        return p.labelled_seconds if in_seconds else p.labelled_trials

    fig, axes = plt.subplots(1, max(len(sessions), 1), figsize=(4.2 * max(len(sessions), 1), 3.6),
                             squeeze=False, sharey=True)
    for ax, sid in zip(axes[0], sessions):
        mine = sorted((p for p in points if p.session == sid), key=x)
        for mode in dict.fromkeys(p.mode for p in mine):
            sel = [p for p in mine if p.mode == mode]
            ax.plot([x(p) for p in sel], [p.r2_adapt for p in sel], "o-", label=mode)
        scratch = [p for p in mine if p.r2_scratch is not None and not math.isnan(p.r2_scratch)]
        seen = {}
        for p in scratch:  # one scratch value per labelled-set size, whatever the mode
            seen.setdefault(x(p), p.r2_scratch)
        if seen:
            xs = sorted(seen)
            ax.plot(xs, [seen[x] for x in xs], "s--", color="0.4", label="from scratch")
        if references and sid in references:
            ax.axhline(references[sid], color="k", linestyle=":", linewidth=1, label="single session, all trials")
        ax.set_xscale("log")
        ticks = sorted({x(p) for p in mine})
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("labelled seconds" if in_seconds else "labelled trials")
        ax.set_title(sid, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test R$^2$")
    axes[0][0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
