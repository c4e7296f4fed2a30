"""Everything a report shows, gathered from run directories and results files.

A run directory (``popdecode train`` or ``popdecode adapt``) holds the model
(``model.safetensors`` + ``model.json``), the training log (``train_log.csv``) and, once it
has been evaluated, ``results_<split>.csv`` / ``.json`` and ``predictions_<split>.h5``.
An adapted run may also hold ``learning_curve.csv`` / ``.json`` / ``.png``.

The report needs the run's predictions on the test split. When the run has none (or they
are older than the model) they are made here by ``popdecode evaluate`` itself, called
in-process with the data directories the run recorded (or ``--data``); evaluate leaves them
in the run directory like any evaluation would. Baselines and other runs given to
``--compare`` contribute their results tables, their training logs and learning curves.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from popdecode.errors import UserError
from popdecode.evaluate.metrics import r2_score
from popdecode.evaluate.prediction_file import SessionPredictions, read_predictions
from popdecode.evaluate.results import ResultRow, read_results

LOG_FILE = "train_log.csv"
CURVE_STEM = "learning_curve"


@dataclass
class LearningCurve:
    """An adaptation learning curve as ``popdecode adapt`` wrote it (table and/or figure)."""

    columns: list[str]
    rows: list[dict]
    png: bytes | None = None


@dataclass
class Source:
    """One column of the comparison: a run or a results file."""

    label: str  # column heading in the R^2 table
    path: Path
    rows: list[ResultRow]
    log: list[dict] = field(default_factory=list)  # training log, for runs
    curve: LearningCurve | None = None


@dataclass
class RunContents:
    """The run the report is about."""

    source: Source
    model: object  # popdecode.model.POYO, in eval mode on the CPU
    meta: dict
    predictions: list[SessionPredictions]
    data: list[str]  # the data directories used (for the ground truth)


# --- small readers --------------------------------------------------------------------------

def read_log(path: Path) -> list[dict]:
    """``train_log.csv`` as a list of dicts of floats (empty cells become NaN)."""
    if not path.is_file():
        return []
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    parsed[k] = math.nan
            out.append(parsed)
    return out


def read_learning_curve(run_dir: Path) -> LearningCurve | None:
    """The learning curve files of an adapted run, if it has any."""
    table, png = run_dir / f"{CURVE_STEM}.csv", run_dir / f"{CURVE_STEM}.png"
    columns: list[str] = []
    rows: list[dict] = []
    if table.is_file():
        with table.open() as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    elif table.with_suffix(".json").is_file():
        data = json.loads(table.with_suffix(".json").read_text())
        rows = data if isinstance(data, list) else data.get("rows", [])
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if not rows and not png.is_file():
        return None
    return LearningCurve(columns=columns, rows=rows, png=png.read_bytes() if png.is_file() else None)


def recorded_data(run_dir: Path, meta: dict) -> list[str]:
    """The data directories a run was trained (or adapted) on, as it recorded them."""
    dirs = list((meta.get("train_config") or {}).get("data") or [])
    config = run_dir / "train_config.json"
    if not dirs and config.is_file():
        dirs = list(json.loads(config.read_text()).get("data") or [])
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


def _fresh(path: Path, model_file: Path) -> bool:
    """``path`` exists and was written after the model it describes."""
    return path.is_file() and path.stat().st_mtime >= model_file.stat().st_mtime


def rows_from_predictions(items: list[SessionPredictions], *, method: str, split: str) -> list[ResultRow]:
    return [
        ResultRow(method=method, split=split, session=it.session, readout=it.readout,
                  r2=r2_score(it.target[it.eval_mask], it.prediction[it.eval_mask]),
                  n_timestamps=int(it.eval_mask.sum()))
        for it in items
    ]


# --- runs ---------------------------------------------------------------------------------

def evaluate_run(run_dir: Path, data: list[str], split: str) -> None:
    """Run ``popdecode evaluate RUN --data ... --split SPLIT`` in this process."""
    from popdecode.evaluate import command as evaluate

    if not data:
        raise UserError(
            f"{run_dir} has no {split} predictions and records no data directory that exists; "
            "pass --data DIR (the store the run was trained on)"
        )
    parser = argparse.ArgumentParser(prog="popdecode evaluate")
    evaluate.add_arguments(parser)
    evaluate.run(parser.parse_args([str(run_dir), "--data", *data, "--split", split]))


def load_run(run_dir: str | Path, *, data: list[str] | None, split: str, evaluate: bool = True) -> RunContents:
    """Model, predictions, results and log of ``run_dir`` (evaluating it first if needed)."""
    from popdecode.model.io import WEIGHTS, load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass a directory written by popdecode train or adapt")
    model, meta = load_model(run_dir)
    dirs = list(data) if data else recorded_data(run_dir, meta)
    pred_path = run_dir / f"predictions_{split}.h5"
    if evaluate and not _fresh(pred_path, run_dir / WEIGHTS):
        evaluate_run(run_dir, dirs, split)
    predictions = read_predictions(pred_path) if pred_path.is_file() else []
    rows = _run_rows(run_dir, split, predictions)
    source = Source(label=run_dir.name, path=run_dir, rows=rows, log=read_log(run_dir / LOG_FILE),
                    curve=read_learning_curve(run_dir))
    return RunContents(source=source, model=model, meta=meta, predictions=predictions, data=dirs)


def _run_rows(run_dir: Path, split: str, predictions: list[SessionPredictions]) -> list[ResultRow]:
    from popdecode.model.io import WEIGHTS

    for name in (f"results_{split}.json", f"results_{split}.csv"):
        path = run_dir / name
        if _fresh(path, run_dir / WEIGHTS):
            return read_results(path)
    return rows_from_predictions(predictions, method="poyo", split=split)


def load_source(path: str | Path, *, data: list[str] | None, split: str) -> Source:
    """A ``--compare`` item: a results CSV/JSON (e.g. a baseline's) or a run directory."""
    path = Path(path)
    if path.is_file():
        if path.suffix not in (".csv", ".json"):
            raise UserError(f"--compare {path}: expected a results .csv/.json (popdecode baseline, evaluate) or a run directory")
        try:
            rows = read_results(path)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            raise UserError(f"--compare {path} is not a results table written by popdecode (columns method, split, session, readout, r2, n_timestamps)") from None
        if rows and not any(r.split == split for r in rows):
            raise UserError(f"--compare {path} holds no {split} results (only {rows[0].split}); "
                            f"compare on --split {rows[0].split}, or re-run that command on the {split} split")
        return Source(label=path.stem, path=path, rows=[r for r in rows if r.split == split])
    if path.is_dir() and (path / "model.json").is_file():
        return load_run(path, data=data, split=split).source
    raise UserError(f"--compare {path} is neither a results .csv/.json file nor a run directory (no model.json there)")


def column_labels(sources: list[Source]) -> list[str]:
    """Column headings: each source's method name, or ``method (name)`` where two would clash."""
    methods = []
    for s in sources:
        names = sorted({r.method for r in s.rows})
        methods.append(names[0] if len(names) == 1 else s.label)
    labels = []
    for s, m in zip(sources, methods):
        labels.append(m if methods.count(m) == 1 else f"{m} ({s.label})")
    return labels


def r2_table(sources: list[Source]) -> tuple[list[str], list[str], np.ndarray]:
    """(sessions, column labels, R^2 [sessions, columns]) with readouts averaged per session.

    NaN where a source has no row for a session.
    """
    labels = column_labels(sources)
    sessions = sorted({r.session for s in sources for r in s.rows})
    table = np.full((len(sessions), len(sources)), np.nan)
    index = {sid: i for i, sid in enumerate(sessions)}
    for j, s in enumerate(sources):
        per: dict[str, list[float]] = {}
        for r in s.rows:
            if not math.isnan(r.r2):
                per.setdefault(r.session, []).append(r.r2)
        for sid, values in per.items():
            table[index[sid], j] = float(np.mean(values))
    return sessions, labels, table


def find_ground_truth(dirs: list[str]):
    """The simulator's ground truth from the first data directory that has one, else None."""
    from popdecode.simulate.ground_truth import FILENAME, load_ground_truth

    for d in dirs:
        if (Path(d) / FILENAME).is_file():
            return load_ground_truth(d, rates=False)
    return None
