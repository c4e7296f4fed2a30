"""Write a self-contained HTML report of a trained (or adapted) run.

    popdecode report RUN [--compare RUN_OR_RESULTS ...] [--data DIR ...] [--out FILE]

One HTML file, figures embedded, nothing fetched from anywhere, with:

  1. the per-session R^2 table of the run against every --compare item (baseline results
     files such as baseline_wiener.csv, or other run directories), best value per session
     highlighted, mean over sessions at the bottom;
  2. decoded against recorded behaviour on the first test trials of each session;
  3. training loss and validation R^2 per epoch (the run's and each compared run's);
  4. the adaptation learning curve, when a run holds one (learning_curve.csv / .png);
  5. the unit and session embeddings projected on their first two principal components.
     On simulated data (ground_truth.h5 in a data directory) units are coloured by their
     hidden pool neuron and the same neuron recorded in two sessions is joined by a line,
     with the share of units whose nearest other-session neighbour is the same neuron;
     on real data units are coloured by session.

When RUN has no predictions on the split (or they are older than its model), they are made
with `popdecode evaluate` on the data directories the run recorded (or --data) and kept in
RUN like any evaluation. The page is written atomically (default RUN/report.html).

examples:
  popdecode report runs/sim --compare baseline_wiener.csv baseline_mlp.csv baseline_gru.csv
  popdecode report runs/adapted --compare runs/pretrained --data sim sim_new --out adapted.html
"""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path

import numpy as np

from popdecode.errors import UserError
from popdecode.report import collect, figures, html
from popdecode.report.projection import pca_2d, same_neuron_neighbours
from popdecode.utils.atomic import write_text
from popdecode.utils.progress import progress

SECTIONS = ("summary", "r2-table", "predictions", "training", "adaptation", "embeddings")
MAX_LINKS = 3000  # same-neuron lines drawn in the unit picture (beyond that it is a grey mess)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by popdecode train or adapt")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN_OR_RESULTS",
                   help="baseline/evaluate results files (.csv or .json) or other run directories to compare with")
    p.add_argument("--data", nargs="+", default=None, metavar="DIR",
                   help="store directories of the sessions (default: those the run recorded); "
                        "a ground_truth.h5 in one of them colours units by hidden neuron")
    p.add_argument("--out", default=None, metavar="FILE", help="HTML file to write (default RUN/report.html)")
    p.add_argument("--split", choices=("test", "valid"), default="test", help="split to show (default test)")
    p.add_argument("--max-sessions", type=int, default=12,
                   help="sessions to draw decoded-vs-recorded figures for (default 12; the table lists all)")
    p.add_argument("--title", default=None, help="page title (default: 'popdecode report: RUN')")


def run(args: argparse.Namespace) -> int:
    if args.max_sessions < 0:
        raise UserError(f"--max-sessions must be 0 or more (got {args.max_sessions})")
    out = build_report(args.run, compare=args.compare, data=args.data, out=args.out, split=args.split,
                       max_sessions=args.max_sessions, title=args.title)
    print(f"report: {out}")
    return 0


def build_report(
    run_dir: str | Path,
    *,
    compare: list[str | Path] = (),
    data: list[str] | None = None,
    out: str | Path | None = None,
    split: str = "test",
    max_sessions: int = 12,
    title: str | None = None,
) -> Path:
    """Write the HTML report of ``run_dir`` (see the module docstring); returns its path."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must name an .html file, got {out}")
    # The --compare items first: a wrong file fails before the run is evaluated.
    others = [collect.load_source(c, data=data, split=split) for c in compare]
    run = collect.load_run(run_dir, data=data, split=split)
    sources = [run.source, *others]

    by_session: dict[str, list] = {}
    for it in run.predictions:
        by_session.setdefault(it.session, []).append(it)
    shown = sorted(by_session)[:max_sessions]
    bar = progress(total=len(shown) + 3, desc="report", unit="figure")
    try:
        sections = [
            _summary(run, sources, split),
            _r2_section(sources, split),
            _predictions_section(run, by_session, shown, bar),
            _training_section(sources, bar),
        ]
        curve = _adaptation_section(sources)
        if curve is not None:
            sections.append(curve)
        sections.append(_embeddings_section(run, bar))
    finally:
        bar.close()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"run <code>{html.esc(run_dir)}</code> &middot; {split} split &middot; written {stamp}"
    write_text(out, html.page(title or f"popdecode report: {run_dir.name}", subtitle, sections))
    return out


# --- sections --------------------------------------------------------------------------------

def _summary(run: collect.RunContents, sources: list[collect.Source], split: str) -> html.Section:
    from popdecode.model.poyo import count_parameters

    model, meta = run.model, run.meta
    c = model.config
    best = meta.get("best") or {}
    rows = [
        ["parameters", f"{count_parameters(model):,}"],
        ["width x depth, latents per step", f"{c.dim} x {c.depth}, {c.num_latents_per_step}"],
        ["sessions / units in the vocabulary", f"{len(model.session_vocab)} / {len(model.unit_vocab)}"],
        ["readouts", ", ".join(f"{k} ({v}-D)" for k, v in model.readout_dims.items())],
        ["data directories", ", ".join(run.data) or "(none found)"],
    ]
    if best.get("valid_r2") is not None:
        rows.append(["best validation R² (epoch)", f"{best['valid_r2']:.4f} ({int(best.get('epoch', 0)) + 1})"])
    sessions, labels, table = collect.r2_table(sources)
    for j, label in enumerate(labels):
        col = table[:, j]
        if np.isfinite(col).any():
            rows.append([f"mean {split} R²: {label}",
                         f"{np.nanmean(col):.4f} over {int(np.isfinite(col).sum())} session(s)"])
    return html.Section("summary", "Summary", html.table(["", "value"], rows))


def _r2_section(sources: list[collect.Source], split: str) -> html.Section:
    sessions, labels, table = collect.r2_table(sources)
    rows, best = [], []
    for i, sid in enumerate(sessions):
        rows.append([sid, *[float(v) for v in table[i]]])
        top = np.nanmax(table[i]) if np.isfinite(table[i]).any() else math.nan
        best.append({j + 1 for j in range(len(labels)) if table[i, j] == top})
    means = [float(np.nanmean(table[:, j])) if np.isfinite(table[:, j]).any() else math.nan
             for j in range(len(labels))]
    rows.append(["mean over sessions", *means])
    best.append(set())
    classes = [""] * len(sessions) + ["mean"]
    files = ", ".join(f"{html.esc(label)}: <code>{html.esc(s.path)}</code>" for label, s in zip(labels, sources))
    body = (
        html.paragraph(f"R² on the {split} split, per session (readouts averaged), over the evaluated "
                       "samples (e.g. the reach periods). Highlighted: the best value of each row.")
        + html.table(["session", *labels], rows, classes=classes, best=best)
        + html.paragraph(f"Sources: {files}.", note=True)
    )
    return html.Section("r2-table", f"R² per session ({split})", body)


def _predictions_section(run: collect.RunContents, by_session: dict, shown: list[str], bar) -> html.Section:
    parts = []
    r2 = {(r.session, r.readout): r.r2 for r in run.source.rows}
    for sid in shown:
        for it in by_session[sid]:
            parts.append(html.img(figures.decoded_vs_true(it, r2.get((sid, it.readout), math.nan)),
                                  f"decoded and recorded {it.readout} of {sid}"))
        bar.update(1)
    if not parts:
        parts.append(html.paragraph("The run has no predictions on this split."))
    left = len(by_session) - len(shown)
    if left > 0:
        parts.append(html.paragraph(f"{left} more session(s) not drawn; raise --max-sessions to see them.", note=True))
    return html.Section("predictions", "Decoded against recorded behaviour", "\n".join(parts))


def _training_section(sources: list[collect.Source], bar) -> html.Section:
    logs = {s.label: s.log for s in sources if s.log}
    bar.update(1)
    if not logs:
        return html.Section("training", "Training and validation curves",
                            html.paragraph("No training log (train_log.csv) in the run."))
    body = html.img(figures.training_curves(logs), "training loss and validation R² per epoch")
    body += html.paragraph("Left: mean training loss per epoch. Right: mean validation R² (thick) and "
                           "per session (thin); the saved model is the epoch with the best mean.", note=True)
    return html.Section("training", "Training and validation curves", body)


def _adaptation_section(sources: list[collect.Source]) -> html.Section | None:
    parts = []
    for s in sources:
        if s.curve is None:
            continue
        parts.append(html.paragraph(f"Learning curve of <code>{html.esc(s.path)}</code>."))
        if s.curve.png:
            parts.append(html.img(s.curve.png, f"adaptation learning curve of {s.label}"))
        if s.curve.rows:
            parts.append(html.table(s.curve.columns, [[_number(r.get(c, "")) for c in s.curve.columns]
                                                      for r in s.curve.rows]))
    if not parts:
        return None
    return html.Section("adaptation", "Adaptation learning curve", "\n".join(parts))


def _number(text):
    """A learning-curve cell as a number where it is one (counts stay integers)."""
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def _embeddings_section(run: collect.RunContents, bar) -> html.Section:
    model = run.model
    unit_names = model.unit_vocab.names
    session_names = model.session_vocab.names
    units = model.unit_vocab.weight.detach().cpu().numpy()[1:]  # row 0 is padding
    sessions = model.session_vocab.weight.detach().cpu().numpy()[1:]
    unit_session = _owning_sessions(unit_names, session_names)
    truth = collect.find_ground_truth(run.data)
    neurons = _hidden_neurons(truth, run.data, unit_names, unit_session) if truth is not None else None
    parts = []
    if len(units):
        points, explained = pca_2d(units)
        if neurons is not None and np.isfinite(neurons).any():
            known = np.isfinite(neurons)
            animals = [truth.session_animal.get(s, "?") for s in unit_session]
            idx = np.nonzero(known)[0]
            links = _same_neuron_links(idx, np.asarray(animals), neurons, unit_session)
            parts.append(html.img(figures.unit_embeddings(
                points[idx], explained, groups=[animals[i] for i in idx], colours=neurons[idx],
                colour_label="hidden pool neuron (lines join one neuron's recordings in two sessions)",
                links=[(np.searchsorted(idx, i), np.searchsorted(idx, j)) for i, j in links],
            ), "unit embeddings coloured by hidden neuron"))
            score = same_neuron_neighbours(units[idx], np.asarray(unit_session)[idx], np.asarray(animals)[idx],
                                           neurons[idx].astype(np.int64))
            if score.units:
                parts.append(html.paragraph(
                    f"Of {score.units} units whose neuron is also recorded in another session of the same animal, "
                    f"{score.hits} ({100 * score.rate:.1f}%) have that same neuron as their nearest neighbour among "
                    f"the other sessions' units (full {units.shape[1]}-D space); a random neighbour would be the "
                    f"same neuron {100 * score.chance:.1f}% of the time. The model is never told which units are "
                    "the same neuron."))
        else:
            parts.append(html.img(figures.unit_embeddings_by_session(points, explained, unit_session),
                                  "unit embeddings coloured by session"))
    bar.update(1)
    if len(sessions):
        points, explained = pca_2d(sessions)
        groups = [truth.session_animal.get(s, "other") for s in session_names] if truth is not None else None
        parts.append(html.img(figures.session_embeddings(points, explained, session_names, groups),
                              "session embeddings"))
    parts.append(html.paragraph(
        "Embedding rows start as N(0, 0.02) noise and move only as far as training pushes them; "
        "principal components are computed on all rows of a table together.", note=True))
    return html.Section("embeddings", "Unit and session embeddings", "\n".join(parts))


def _owning_sessions(unit_names: list[str], session_names: list[str]) -> list[str]:
    """The session of each unit row (unit rows are named f"{session}/{unit}")."""
    known = set(session_names)
    out = []
    for name in unit_names:
        # Session ids may contain "/": take the longest prefix that is a session.
        cuts = [i for i, ch in enumerate(name) if ch == "/"]
        owner = next((name[:i] for i in reversed(cuts) if name[:i] in known), name.rsplit("/", 1)[0])
        out.append(owner)
    return out


def _hidden_neurons(truth, data: list[str], unit_names: list[str], unit_session: list[str]) -> np.ndarray:
    """Pool neuron of every unit row (NaN where the ground truth does not cover it)."""
    from popdecode.data.store import open_sessions

    lookup: dict[str, float] = {}
    for s in open_sessions(data):
        index = truth.unit_pool_index.get(s.id)
        if index is None or len(index) != len(s.unit_ids):
            continue
        for uid, neuron in zip(s.unit_ids, index):
            lookup[f"{s.id}/{uid}"] = float(neuron)
    return np.array([lookup.get(n, np.nan) for n in unit_names])


def _same_neuron_links(idx: np.ndarray, animals: np.ndarray, neurons: np.ndarray,
                       unit_session: list[str]) -> list[tuple[int, int]]:
    """Pairs of unit rows that are one neuron recorded in two sessions (a chain per neuron)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i in idx:
        groups.setdefault((str(animals[i]), int(neurons[i])), []).append(int(i))
    links = []
    for members in groups.values():
        members = [m for k, m in enumerate(members)
                   if all(unit_session[m] != unit_session[o] for o in members[:k])]
        links += list(zip(members[:-1], members[1:]))
    return links[:MAX_LINKS]
