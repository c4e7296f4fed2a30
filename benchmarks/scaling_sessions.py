"""Does more pretraining data help? Held-out R^2 against the number of pretraining sessions (issue 20).

    python benchmarks/scaling_sessions.py run --data SIM --work DIR [options]   # train, adapt, table, figure
    python benchmarks/scaling_sessions.py summary --data SIM --work DIR         # table and figure again
    python benchmarks/scaling_sessions.py summary --data SIM --work DIR --also DIR2   # one figure, two budgets
    python benchmarks/scaling_sessions.py ceiling --data SIM --work DIR --ground-truth SIM_RATES/ground_truth.h5

SIM is a simulator store with 9 animals x 5 sessions:
``popdecode simulate --out SIM --animals 9 --sessions-per-animal 5 --min-units 30 --max-units 90 --seed 0 --no-rates``.

**Design.** Nested pretraining sets, animal 0 in every one, so that a bigger set only adds:

    1 = a0-s0                 2 = a0-s0, a1-s0 (2 animals)     4 = a0-1 x s0-1 (2 animals)
    8 = a0-3 x s0-1 (4)      16 = a0-7 x s0-1 (8)             32 = a0-7 x s0-3 (8)

Held out (never in a pretraining set): ``sim-a0-s4``, another session of a seen animal (other
units of a pool the model has seen, under new ids), and ``sim-a8-s0``, an animal no set has.

Every pretraining run has the **same compute**: ``--max-steps`` steps of ``--batch-size``
windows at its size's rate (``LR``; ``--lr`` sets one for all), without dropout (with 1,500
steps the models underfit rather than overfit), so a bigger set sees each of its sessions
fewer times; the table shows those passes per session, the step at which the run left its
initial loss plateau (where it predicts the mean) and the pretrained model's valid R^2 on
``sim-a0-s0`` (the one session in every set) and on its whole set, which tell "more data does
not help" apart from "more data, less training each". Two model sizes (``--sizes``): *small*
(dim 64, depth 2, 8 latents per step, 1 cross / 2 self heads) at 3e-3 and *large* (dim 128,
depth 4, 4 self heads) at 1e-3. Each pretrained model is adapted to each held-out session
with ``popdecode adapt --mode unit-id`` (the default mixture rows) at 10 labelled trials and at
all of them, ``--adapt-steps`` steps each. References, at the small size: a model from scratch
on the same 10 / all trials (adapt's ``--scratch``, run with the 1-session model's adaptation),
and single-session training of each held-out session with the pretraining budget.

Every heavy command runs under the lane lock (``--lock``, one command per acquisition, a pause
between commands so a job waiting for both lanes can get in) and is skipped when its output
exists, so the study can be stopped and resumed. Commands go to ``DIR/commands.txt``, the table
to ``DIR/summary.md`` / ``summary.json``, the figure to ``--figure``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import itertools
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptation import SMALL_MODEL, _f, _r2, cli, log_command, train_windows  # noqa: E402

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "scaling_sessions.png"
HELDOUT = {"sim-a0-s4": "seen animal", "sim-a8-s0": "unseen animal"}
COUNTS = (1, 2, 4, 8, 16, 32)
SIZES = {"small": SMALL_MODEL, "large": {**SMALL_MODEL, "dim": 128, "depth": 4, "self_heads": 4}}
# 3e-3 is the small-data recipe's rate; at it the large model stays on its initial plateau once
# it has 8 sessions or more (BENCHMARKS.md, "Scaling study"), at 1e-3 it leaves it in ~500 steps.
LR = {"small": 3e-3, "large": 1e-3}
NO_DROPOUT = {"ffn_dropout": 0, "lin_dropout": 0, "atn_dropout": 0}
COMMON = "sim-a0-s0"  # the session every pretraining set holds


def session_set(count: int) -> list[str]:
    """The nested pretraining set of ``count`` sessions (animals x sessions, animal 0 first)."""
    animals, sessions = {1: (1, 1), 2: (2, 1), 4: (2, 2), 8: (4, 2), 16: (8, 2), 32: (8, 4)}[count]
    return [f"sim-a{a}-s{s}" for a in range(animals) for s in range(sessions)]


def plateau_exit(log: Path) -> int | None:
    """First logged step whose training loss is below 90 % of the first one: the run left its
    initial plateau (where it predicts the mean) there. None while it has not."""
    if not log.exists():
        return None
    with open(log, newline="") as f:
        rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if r["loss"]]
    return next((step for step, loss in rows if loss < 0.9 * rows[0][1]), None) if rows else None


@contextlib.contextmanager
def lane(path: str | None, pause: float):
    """Hold the lane lock for one command (flock(2), the lock ``flock LOCK cmd`` takes)."""
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    time.sleep(pause)


class Study:
    def __init__(self, args):
        self.args, self.data, self.work = args, Path(args.data), Path(args.work)
        self.runs = self.work / "runs"
        self.work.mkdir(parents=True, exist_ok=True)

    def run(self, argv: list[str]) -> float:
        with lane(self.args.lock, self.args.pause):
            return cli(self.work, argv)

    def record(self, key: str, seconds: float) -> None:
        (self.work / "timings").mkdir(exist_ok=True)
        (self.work / "timings" / f"{key}.json").write_text(json.dumps({key: round(seconds, 1)}) + "\n")

    def lr(self, size: str) -> float:
        return self.args.lr if self.args.lr is not None else LR[size]

    def train(self, sessions: list[str], size: str, out: Path) -> float:
        """``popdecode train`` with the study's fixed budget; about ``--validations`` validations."""
        a = self.args
        windows = sum(train_windows(self.data, s) for s in sessions)
        epochs = math.ceil(a.max_steps / math.ceil(windows / a.batch_size))
        options = [x for k, v in {**SIZES[size], **NO_DROPOUT}.items() for x in ("--model-option", f"{k}={v}")]
        return self.run(["train", "--data", str(self.data), "--sessions", *sessions, "--out", str(out),
                         "--preset", "poyo-1.3M", *options, "--batch-size", str(a.batch_size), "--lr", f"{self.lr(size):g}",
                         "--epochs", str(epochs), "--max-steps", str(a.max_steps),
                         "--eval-every", str(max(1, epochs // a.validations)), "--threads", str(a.threads),
                         # the random start unless --train-flags says otherwise: the recipes start
                         # from tuning on 8+ sessions, and the study's recorded runs did not
                         "--unit-init", "random", *shlex.split(a.train_flags)])

    def adapt(self, pre: Path, sid: str, out: Path, *, scratch: bool) -> float:
        a = self.args
        return self.run(["adapt", str(pre), "--data", str(self.data), "--sessions", sid, "--mode", "unit-id",
                         "--labelled-trials", "10,all", "--steps", str(a.adapt_steps),
                         "--scratch" if scratch else "--no-scratch", "--scratch-steps", str(a.scratch_steps),
                         "--threads", str(a.threads), "--out", str(out)])

    def pretrain_dir(self, size: str, count: int) -> Path:
        return self.runs / f"{size}-n{count:02d}"

    def execute(self) -> None:
        a = self.args
        todo = [(size, n) for size in a.sizes.split(",") for n in [int(x) for x in a.counts.split(",")]]
        for size, n in todo:
            pre = self.pretrain_dir(size, n)
            if not (pre / "model.json").exists():
                self.record(f"pretrain-{size}-n{n:02d}", self.train(session_set(n), size, pre))
            if not (pre / "results_valid.json").exists():
                # Validation R^2 per pretraining session: is a bigger set trained as well as a small one?
                self.run(["evaluate", str(pre), "--data", str(self.data), "--split", "valid",
                          "--sessions", *session_set(n)])
            for sid in HELDOUT:
                out = self.runs / f"adapt-{size}-n{n:02d}-{sid}"
                if not (out / "learning_curve.json").exists():
                    scratch = n == 1 and size == a.reference_size
                    self.record(f"adapt-{size}-n{n:02d}-{sid}", self.adapt(pre, sid, out, scratch=scratch))
            self.summarise()
        for sid in HELDOUT:
            ref = self.runs / f"single-{a.reference_size}-{sid}"
            if not (ref / "model.json").exists():
                self.record(f"single-{a.reference_size}-{sid}", self.train([sid], a.reference_size, ref))
            if not (ref / "results_test.json").exists():
                self.run(["evaluate", str(ref), "--data", str(self.data), "--split", "test"])
        self.summarise()

    # ---- tables and figure -------------------------------------------------------------------

    def collect(self) -> dict:
        """Every number the table and the figure show, from the run directories."""
        a, nan = self.args, float("nan")
        timings = {}
        for f in sorted((self.work / "timings").glob("*.json")) if (self.work / "timings").exists() else []:
            timings.update(json.loads(f.read_text()))
        rows = []
        for size in SIZES:
            for n in COUNTS:
                pre = self.pretrain_dir(size, n)
                if not (pre / "model.json").exists():
                    continue
                windows = sum(train_windows(self.data, s) for s in session_set(n))
                row = {"size": size, "sessions": n, "passes_per_session": a.max_steps * a.batch_size / windows,
                       "valid_common": nan, "valid_set": nan,
                       "pretrain_s": timings.get(f"pretrain-{size}-n{n:02d}")}
                config = json.loads((pre / "train_config.json").read_text())
                row["lr"] = config["lr"]
                row["embedding_lr_scale"] = config.get("embedding_lr_scale", 1.0)
                row["unit_init"] = config.get("unit_init", "random")
                row["plateau_step"] = plateau_exit(pre / "train_log.csv")
                if (pre / "results_valid.json").exists():
                    row["valid_common"] = _r2(pre / "results_valid.json", COMMON)
                    per = [_r2(pre / "results_valid.json", s) for s in session_set(n)]
                    row["valid_set"] = sum(per) / len(per)
                for sid in HELDOUT:
                    path = self.runs / f"adapt-{size}-n{n:02d}-{sid}" / "learning_curve.json"
                    curve = {p["requested"]: p for p in json.loads(path.read_text())} if path.exists() else {}
                    for req in ("10", "all"):
                        row[f"{sid}/{req}"] = curve.get(req, {}).get("r2_adapt", nan)
                        if curve.get(req, {}).get("r2_scratch") is not None:
                            row[f"{sid}/scratch-{req}"] = curve[req]["r2_scratch"]
                rows.append(row)
        refs = {}
        for sid in HELDOUT:
            single = self.runs / f"single-{a.reference_size}-{sid}" / "results_test.json"
            scratch = next((r for r in rows if r["size"] == a.reference_size and r["sessions"] == 1), {})
            refs[sid] = {"single": _r2(single, sid) if single.exists() else nan,
                         "scratch-10": scratch.get(f"{sid}/scratch-10", nan),
                         "scratch-all": scratch.get(f"{sid}/scratch-all", nan)}
        return {"rows": rows, "references": refs, "timings": timings}

    def summarise(self) -> None:
        out = self.collect()
        cols = [(sid, req) for sid in HELDOUT for req in ("10", "all")]
        lines = ["| size | pretraining sessions | passes per session | plateau left at step | valid R^2, sim-a0-s0 | "
                 "valid R^2, own set | " + " | ".join(f"{sid} ({HELDOUT[sid]}), {req} trials" for sid, req in cols)
                 + " | pretrain s |",
                 "|---" * (7 + len(cols)) + "|"]
        for r in out["rows"]:
            plateau = "never" if r["plateau_step"] is None else str(r["plateau_step"])
            lines.append(f"| {r['size']}, {rate(r)} | {r['sessions']} | {r['passes_per_session']:.1f} | {plateau} | {_f(r['valid_common'])} | "
                         f"{_f(r['valid_set'])} | " + " | ".join(_f(r[f'{sid}/{req}']) for sid, req in cols)
                         + f" | {_f(r['pretrain_s'], '.0f') if r['pretrain_s'] else '-'} |")
        refs = out["references"]
        for name, key in (("from scratch", "scratch-10"), ("from scratch", "scratch-all")):
            req = key.split("-")[1]
            lines.append(f"| {self.args.reference_size}, {name} on {req} trials | - | - | - | - | - | "
                         + " | ".join(_f(refs[sid][key]) if r == req else "-" for sid, r in cols) + " | - |")
        lines.append(f"| {self.args.reference_size}, single-session training ({self.args.max_steps} steps) | - | - | - | - | - | "
                     + " | ".join(_f(refs[sid]["single"]) if r == "all" else "-" for sid, r in cols) + " | - |")
        lines.append("")
        lines.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in out["timings"].items()))
        text = "\n".join(lines)
        print("\n" + text, flush=True)
        (self.work / "summary.md").write_text(text + "\n")
        (self.work / "summary.json").write_text(json.dumps(out, indent=2) + "\n")
        self.figure(out)

    def figure(self, out: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        # One line per (size, budget): this study's runs, then those of each --also study.
        studies = [(self.args.max_steps, out)] + [(st.args.max_steps, st.collect()) for st in self.also()]
        colours = itertools.cycle(f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive"))
        series = [(f"{size}, {steps} steps, {rate(rows[0])}", next(colours), rows)
                  for steps, o in studies for size in SIZES
                  if (rows := [r for r in o["rows"] if r["size"] == size])]
        fig, axes = plt.subplots(1, 3, figsize=(15, 6))
        for ax, sid in zip(axes, HELDOUT):
            for name, colour, rows in series:
                for req, style in (("all", "-"), ("10", "--")):
                    pts = [(r["sessions"], r[f"{sid}/{req}"]) for r in rows if r[f"{sid}/{req}"] == r[f"{sid}/{req}"]]
                    if pts:
                        ax.plot(*zip(*pts), style, marker="o", color=colour)
            # Single-session training is a reference per budget; from scratch has one budget (adapt's).
            singles = {(steps, rate(o["rows"][0]) if o["rows"] else ""): o["references"][sid]["single"]
                       for steps, o in reversed(studies)}
            for ((steps, how), single), grey in zip(sorted(singles.items()), itertools.cycle(("grey", "black"))):
                if single == single:
                    ax.axhline(single, color=grey, linewidth=2, label=f"single-session ({steps} steps, {how}), all trials")
            ref = out["references"][sid]
            for key, style, label in (("scratch-all", ":", "from scratch, all trials"),
                                      ("scratch-10", "-.", "from scratch, 10 trials")):
                if ref[key] == ref[key]:
                    ax.axhline(ref[key], color="grey", linestyle=style, label=label)
            ax.set_title(f"held out: {sid} ({HELDOUT[sid]})")
            ax.set_ylabel("test R^2 after adaptation (unit-id)")
        ax = axes[2]
        for name, colour, rows in series:
            for key, style in (("valid_common", "-"), ("valid_set", "--")):
                pts = [(r["sessions"], r[key]) for r in rows if r[key] == r[key]]
                if pts:
                    ax.plot(*zip(*pts), style, marker="s", color=colour)
        ax.set_title("pretrained models, valid R^2\n(solid: sim-a0-s0, dashed: mean of own set)")
        ax.set_ylabel("valid R^2 on pretraining sessions")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xticks(COUNTS, [str(c) for c in COUNTS])
            ax.set_xlabel("pretraining sessions")
            ax.grid(alpha=0.3)
        # One legend for the three panels: a colour per (size, budget, rate), a style per budget of labels.
        handles = [Line2D([], [], color=colour, marker="o", label=name) for name, colour, _ in series]
        handles += [Line2D([], [], color="0.5", marker="o", linestyle="-", label="adapted with all trials"),
                    Line2D([], [], color="0.5", marker="o", linestyle="--", label="adapted with 10 trials")]
        handles += axes[0].get_legend_handles_labels()[0]  # the reference lines
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.03 + 0.035 * math.ceil(len(handles) / 4), 1, 1))
        path = Path(self.args.figure)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
        plt.close(fig)
        print(f"figure: {path}", flush=True)

    def also(self) -> list["Study"]:
        """The --also studies, each with the step budget its pretraining runs were given."""
        studies = []
        for work in self.args.also:
            steps = budget(Path(work))
            if steps is None:
                raise SystemExit(f"--also {work}: no pretraining runs under {work}/runs; run that study first")
            studies.append(Study(argparse.Namespace(**{**vars(self.args), "work": work, "max_steps": steps, "also": []})))
        return studies


def rate(row: dict) -> str:
    """How a row's runs were trained: the rate, the embedding tables' multiple of it, and where
    unit embeddings started when not at random."""
    scale = row.get("embedding_lr_scale", 1.0)
    return (f"lr {row['lr']:g}" + (f", embeddings x{scale:g}" if scale != 1 else "")
            + (f", {row['unit_init']} init" if row.get("unit_init", "random") != "random" else ""))


def budget(work: Path) -> int | None:
    """The --max-steps a study's pretraining runs were given (None before the first one)."""
    configs = [c for size in SIZES for c in sorted(Path(work, "runs").glob(f"{size}-n*/train_config.json"))]
    return json.loads(configs[0].read_text())["max_steps"] if configs else None


def ceiling(study: Study, ground_truth: Path) -> None:
    """R^2 of a decoder that recovers exactly the velocity the neurons encode (hand velocity plus
    the simulator's command noise) on the held-out sessions' scored test samples: what no decoder
    of the spikes can beat. Needs the ground truth with its hidden arrays (simulate without
    ``--no-rates``, same options and seed: the same sessions)."""
    import h5py
    import numpy as np

    from popdecode.evaluate.metrics import r2_score
    from popdecode.evaluate.prediction_file import read_predictions

    with h5py.File(ground_truth, "r") as gt:
        for sid in HELDOUT:
            path = study.runs / f"single-{study.args.reference_size}-{sid}" / "predictions_test.h5"
            if f"sessions/{sid}/command_noise" not in gt or not path.exists():
                raise SystemExit(f"ceiling needs {path} (run the study) and a ground truth with rates")
            p = next(x for x in read_predictions(path) if x.session == sid)
            noise = gt[f"sessions/{sid}/command_noise"][:]
            grid = np.arange(len(noise)) * gt.attrs["rate_step"]
            encoded = p.target + np.stack([np.interp(p.timestamps, grid, n) for n in noise.T], axis=1)
            m = p.eval_mask
            print(f"{sid} ({HELDOUT[sid]}): {len(gt[f'sessions/{sid}/unit_pool_index'])} units, ceiling R^2 "
                  f"{r2_score(p.target[m], encoded[m]):.3f} over {int(m.sum())} samples")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("run", "summary", "ceiling"))
    p.add_argument("--data", required=True, help="simulator store (9 animals x 5 sessions, see above)")
    p.add_argument("--work", required=True, help="directory for runs, commands.txt and tables")
    p.add_argument("--sizes", default="small,large", help=f"comma list among {', '.join(SIZES)}, run in this order")
    p.add_argument("--counts", default="1,2,4,8,16,32", help="pretraining set sizes, run in this order")
    p.add_argument("--reference-size", default="small", choices=list(SIZES), help="model size of the references")
    p.add_argument("--max-steps", type=int, default=1500, help="steps of every pretraining run (same compute)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate of every run (default per size: " + ", ".join(f"{k} {v:g}" for k, v in LR.items()) + ")")
    p.add_argument("--validations", type=int, default=6, help="about this many validations per pretraining run")
    p.add_argument("--adapt-steps", type=int, default=150, help="adapt --steps (unit-id stage)")
    p.add_argument("--scratch-steps", type=int, default=400, help="adapt --scratch-steps of the from-scratch reference")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-flags", default="", metavar="FLAGS",
                   help='more flags for every popdecode train of the study, e.g. "--embedding-lr-scale 10"')
    p.add_argument("--lock", default=None, help="lane lock file held for each command (e.g. /tmp/pd-laneB.lock)")
    p.add_argument("--pause", type=float, default=5.0, help="seconds between commands, with --lock")
    p.add_argument("--figure", default=str(FIGURE))
    p.add_argument("--also", action="append", default=[], metavar="DIR",
                   help="summary: also plot the runs of another study's work directory (e.g. a longer budget)")
    p.add_argument("--ground-truth", help="ceiling: ground_truth.h5 of the same simulation with its rates")
    args = p.parse_args()
    os.environ.setdefault("POPDECODE_PROGRESS", "0")
    if args.what == "ceiling":
        ceiling(Study(args), Path(args.ground_truth))
        return
    if args.what == "summary":  # the tables show the budget the runs had, whatever --max-steps says
        args.max_steps = budget(Path(args.work)) or args.max_steps
        Study(args).summarise()
        return
    import torch

    study = Study(args)
    torch.set_num_threads(args.threads)
    log_command(study.work, "# " + " ".join(sys.argv))
    study.execute()


if __name__ == "__main__":
    main()
