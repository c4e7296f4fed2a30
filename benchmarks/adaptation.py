"""Few-shot adaptation, end to end: pretrain, adapt to held-out sessions, compare (issue 4).

    python benchmarks/adaptation.py sim  --work DIR [options]   # the simulator experiment
    python benchmarks/adaptation.py real --work DIR [options]   # the three real monkey sessions
    python benchmarks/adaptation.py summary --work DIR          # print the tables again

**Simulator.** 4 animals x 5 sessions (seed 0, 40 to 120 units per session, 120 trials).
Pretraining: the first 4 sessions of animals 0-2 (12 sessions, 3 animals). Held out:
``sim-a0-s4`` (a 5th session of a seen animal: other units of a pool the model has seen,
under new ids) and ``sim-a3-s0`` (an animal the model has never seen).

**Real.** Pretraining on the two Chewie sessions; held out: ``mihi_20140303`` (another monkey).

The model is a small POYO (``--model``, default dim 64, depth 2, 8 latents per step; the
published presets take hours per epoch on a shared 2-core CPU); every model of an experiment
(pretrained, single-session, from scratch) has that same shape. Steps, each skipped when its
output exists (so the experiment can be run in pieces with ``--steps``):

1. *data*: ``popdecode simulate`` / ``popdecode prepare``;
2. *pretrain*: the trainer (POYO's recipe: LAMB, lr 3.125e-5 x batch, flat then cosine) on
   the pretraining sessions, ``--pretrain-epochs`` within ``--pretrain-minutes``;
3. *tune*: the unit-id learning rate of random rows and the from-scratch learning rate, each
   picked from a few values by the **valid** R^2 of the first held-out session at 10 labelled
   trials (test is never looked at); mixture rows use adapt's default rate;
4. *reference*: single-session training of each held-out session on all of its training
   trials (the trainer, ``--reference-steps`` steps at the tuned from-scratch learning
   rate): the 100 % mark;
5. *curve*: ``popdecode adapt PRETRAIN --sessions S --mode unit-id --labelled-trials
   5,10,20,50,all`` with a from-scratch model on the same trials at each point (new rows
   drawn at random, the paper's recipe), and the same curve with ``--new-rows mixture``
   (without scratch models: they would be the same ones), and once more with mixture rows and
   ``--align 1`` ("aligned": decoded behaviour on the session's unlabelled train windows
   aligned to the pretraining sessions' behaviour), and with ``--self-train 1`` on top
   ("self-trained": a second adaptation on all training trials, those beyond the labelled ones
   labelled by the first adaptation's decoding);
6. *finetune*: ``--mode unit-id+finetune`` at 10 labelled trials;
7. *seeds*: the 10-trial point again with ``--seed`` 1 and 2 (``--goal-seeds``), for each kind
   of new rows: with ten trials the result depends on the seed (new rows, window order,
   unit dropout) by up to 0.2 R^2, so the goals are checked on the mean of three seeds.

The commands run are printed (and saved in ``DIR/<experiment>/commands.txt``); the tables go
to ``summary.md`` / ``summary.json`` beside them. Goal checks (simulator, 10 trials): unit-id
beats scratch by at least 0.15 R^2 and reaches at least 80 % of the single-session R^2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

REAL = Path(os.environ.get("POPDECODE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
SIM_PRETRAIN = "sim-a[012]-s[0-3]"
SIM_HELDOUT = {"sim-a0-s4": "seen animal", "sim-a3-s0": "unseen animal"}
REAL_PRETRAIN = ["chewie_20131003", "chewie_20131219"]
REAL_HELDOUT = {"mihi_20140303": "unseen monkey"}
STEPS = ("data", "pretrain", "tune", "reference", "curve", "finetune", "seeds")
# Variants of unit identification: "aligned" is mixture rows plus --align (the alignment term),
# "self-trained" that plus --self-train 1 (one round of pseudo-labels).
NEW_ROWS = ("random", "mixture", "aligned", "self-trained")
LABELS = {"random": "random rows", "mixture": "mixture rows", "aligned": "mixture + align",
          "self-trained": "mixture + align + self-train"}
ALIGN = 1.0  # the --align weight of the "aligned" and "self-trained" variants


def curve_dir(runs: Path, sid: str, rows: str) -> Path:
    return runs / (f"curve-{sid}" if rows == "random" else f"curve-{rows}-{sid}")


def rows_flags(rows: str) -> list[str]:
    """popdecode adapt flags of one variant of new rows."""
    if rows == "aligned":
        return ["--new-rows", "mixture", "--align", f"{ALIGN:g}"]
    if rows == "self-trained":
        return [*rows_flags("aligned"), "--self-train", "1"]
    return ["--new-rows", rows]


SMALL_MODEL = {"dim": 64, "depth": 2, "num_latents_per_step": 8, "cross_heads": 1, "self_heads": 2}


def log_command(work: Path, line: str) -> None:
    print(f"\n$ {line}", flush=True)
    with open(work / "commands.txt", "a") as f:
        f.write(line + "\n")


def cli(work: Path, argv: list[str]) -> float:
    """Run one popdecode command (in this process), log it, return its wall time in seconds."""
    from popdecode.cli import main as popdecode

    log_command(work, "popdecode " + " ".join(shlex.quote(a) for a in argv))
    tick = time.perf_counter()
    code = popdecode(argv)
    if code:
        sys.exit(f"command failed with status {code}: {argv}")
    return time.perf_counter() - tick


def train(work: Path, data: Path, sessions: list[str], out: Path, *, epochs: int, minutes: float,
          batch_size: int, model: dict, eval_every: int, threads: int | None, lr: float | None = None) -> float:
    """``popdecode train`` with a model shape the command line has no flag for (trainer API)."""
    from popdecode.train.config import TrainConfig
    from popdecode.train.trainer import train_from_scratch

    cfg = TrainConfig(data=[str(data)], sessions=sessions, model_overrides=dict(model), epochs=epochs,
                      batch_size=batch_size, time_budget_min=minutes, eval_every=eval_every, threads=threads, lr=lr)
    log_command(work, f"train_from_scratch(TrainConfig(data=[{str(data)!r}], sessions={sessions}, "
                      f"model_overrides={model}, epochs={epochs}, batch_size={batch_size}, lr={lr}, "
                      f"time_budget_min={minutes}, eval_every={eval_every}, threads={threads}), {str(out)!r})")
    tick = time.perf_counter()
    result = train_from_scratch(cfg, out)
    print(f"  {result['steps']} steps, {result['epochs_done']} epochs, best valid R^2 {result['best_valid_r2']}"
          f"{' (stopped: ' + result['stopped'] + ')' if result['stopped'] else ''}", flush=True)
    return time.perf_counter() - tick


def train_windows(data: Path, sid: str) -> int:
    """Training windows per epoch of one session (its whole train split)."""
    from popdecode.data.store import open_sessions
    from popdecode.tokenize.sampler import TrainWindowSampler

    session = [s for s in open_sessions([str(data)]) if s.id == sid][0]
    return TrainWindowSampler(intervals=[session.split("train")], window_length=1.0).total_windows


def tune(work: Path, data: Path, pre: Path, sid: str, *, lrs: list[float], scratch_lrs: list[float],
         adapt_flags: dict) -> dict:
    """Pick the unit-id and scratch learning rates by valid R^2 at 10 labelled trials of ``sid``."""
    from popdecode.adapt.adapt import AdaptConfig, adapt, train_scratch
    from popdecode.adapt.labelled import LabelledSpec, labelled_pieces
    from popdecode.data.store import open_sessions
    from popdecode.model.io import load_model

    session = [s for s in open_sessions([str(data)]) if s.id == sid]
    trials = []
    for kind, values in (("unit-id", lrs), ("scratch", scratch_lrs)):
        for lr in values:
            model, meta = load_model(pre)
            pieces = {sid: labelled_pieces(session[0], LabelledSpec(count=10))}
            out = work / "tune" / f"{kind}-{lr:g}"
            tick = time.perf_counter()
            if kind == "unit-id":
                cfg = AdaptConfig(new_rows="random", lr=lr, **adapt_flags)
                _, _, info = adapt(model, meta, session, pieces, cfg, out)
                valid = info["stages"]["unit-id"]["best_valid_r2"]
            else:
                cfg = AdaptConfig(scratch_lr=lr, **adapt_flags)
                _, _, info = train_scratch(model, session[0], pieces[sid], cfg, out)
                valid = info["best_valid_r2"]
            trials.append({"kind": kind, "lr": lr, "valid_r2": valid, "seconds": round(time.perf_counter() - tick, 1)})
            print(f"  tune {kind} lr {lr:g}: valid R^2 {valid:.3f}", flush=True)
    best = {kind: max((t for t in trials if t["kind"] == kind), key=lambda t: t["valid_r2"])["lr"]
            for kind in ("unit-id", "scratch")}
    return {"session": sid, "trials": trials, "lr": best["unit-id"], "scratch_lr": best["scratch"]}


def run_experiment(args, *, kind: str) -> None:
    work = Path(args.work) / kind
    work.mkdir(parents=True, exist_ok=True)
    data, runs = work / "data", work / "runs"
    heldout = SIM_HELDOUT if kind == "sim" else REAL_HELDOUT
    steps = set(args.steps.split(",")) if args.steps else set(STEPS)
    model = json.loads(args.model)
    extra = shlex.split(args.adapt_args)
    adapt_flags = {"threads": args.threads} if args.threads else {}
    for flag, field in (("--steps", "steps"), ("--scratch-steps", "scratch_steps"), ("--finetune-steps", "finetune_steps")):
        if flag in extra:
            adapt_flags[field] = int(extra[extra.index(flag) + 1])

    def record(key, seconds):
        # One file per timing: steps of one experiment may run in separate processes.
        (work / "timings").mkdir(exist_ok=True)
        (work / "timings" / (key.replace("/", "__") + ".json")).write_text(json.dumps({key: round(seconds, 1)}) + "\n")

    if "data" in steps and not (data / "manifest.json").exists():
        if kind == "sim":
            record("data", cli(work, ["simulate", "--out", str(data), "--animals", "4", "--sessions-per-animal", "5",
                                      "--min-units", "40", "--max-units", "120", "--seed", "0", "--no-rates"]))
        else:
            files = [str(REAL / f"{s}.nwb") for s in REAL_PRETRAIN + list(REAL_HELDOUT)]
            record("data", cli(work, ["prepare", *files, "--out", str(data), "--split-margin", f"{args.split_margin:g}"]))

    pre = runs / "pretrain"
    if "pretrain" in steps and not (pre / "model.json").exists():
        sessions = [SIM_PRETRAIN] if kind == "sim" else REAL_PRETRAIN
        record("pretrain", train(work, data, sessions, pre, epochs=args.pretrain_epochs, minutes=args.pretrain_minutes,
                                 batch_size=args.batch_size, model=model, eval_every=args.eval_every, threads=args.threads,
                                 lr=args.pretrain_lr))

    tuned_path = work / "tune.json"
    if "tune" in steps and not tuned_path.exists():
        tick = time.perf_counter()
        log_command(work, f"tune (benchmarks/adaptation.py): unit-id lr in {args.tune_lrs}, scratch lr in "
                          f"{args.tune_scratch_lrs}, by valid R^2 of {next(iter(heldout))} at 10 trials")
        tuned = tune(work, data, pre, next(iter(heldout)), lrs=[float(x) for x in args.tune_lrs.split(",")],
                     scratch_lrs=[float(x) for x in args.tune_scratch_lrs.split(",")], adapt_flags=adapt_flags)
        tuned_path.write_text(json.dumps(tuned, indent=2) + "\n")
        record("tune", time.perf_counter() - tick)
    lr_flags = []
    if tuned_path.exists():
        tuned = json.loads(tuned_path.read_text())
        lr_flags = ["--lr", f"{tuned['lr']:g}", "--scratch-lr", f"{tuned['scratch_lr']:g}"]
    machine = ["--threads", str(args.threads)] if args.threads else []

    for sid in heldout:
        if args.only and sid not in args.only.split(","):
            continue
        ref = runs / f"single-{sid}"
        if "reference" in steps and not (ref / "results_test.json").exists():
            # The 100 % mark should be the best single-session model we can train: the tuned
            # from-scratch learning rate, for --reference-steps steps (POYO's default rate,
            # 3.125e-5 x batch, is made for 1000-epoch runs and stays on its initial plateau here).
            epochs = math.ceil(args.reference_steps / max(1, math.ceil(
                train_windows(data, sid) / args.reference_batch_size)))
            record(f"single/{sid}", train(work, data, [sid], ref, epochs=epochs,
                                          minutes=args.reference_minutes, batch_size=args.reference_batch_size,
                                          model=model, eval_every=max(1, epochs // 15), threads=args.threads,
                                          lr=tuned["scratch_lr"] if tuned_path.exists() else None))
            cli(work, ["evaluate", str(ref), "--data", str(data), "--split", "test"])
        for rows in NEW_ROWS:
            curve = curve_dir(runs, sid, rows)
            if "curve" in steps and not (curve / "learning_curve.json").exists():
                flags = [*rows_flags(rows), *(lr_flags if rows == "random" else ["--no-scratch"]), *machine, *extra]
                record(f"curve/{rows}/{sid}", cli(work, [
                    "adapt", str(pre), "--data", str(data), "--sessions", sid, "--mode", "unit-id",
                    "--labelled-trials", args.labelled, "--out", str(curve), *flags]))
            for seed in [int(x) for x in args.goal_seeds.split(",") if x]:
                out = runs / f"seed{seed}-{rows}-{sid}"
                if "seeds" in steps and not (out / "learning_curve.json").exists():
                    flags = [*rows_flags(rows), *(lr_flags[:2] if rows == "random" else [])]
                    record(f"seeds/{rows}/{seed}/{sid}", cli(work, [
                        "adapt", str(pre), "--data", str(data), "--sessions", sid, "--mode", "unit-id",
                        "--labelled-trials", "10", "--seed", str(seed), "--out", str(out), *flags, *machine, *extra]))
        ft = runs / f"finetune-{sid}"
        if "finetune" in steps and not (ft / "learning_curve.json").exists():
            record(f"finetune/{sid}", cli(work, [
                "adapt", str(pre), "--data", str(data), "--sessions", sid, "--mode", "unit-id+finetune",
                "--labelled-trials", "10", "--new-rows", "random", "--out", str(ft), *lr_flags[:2], *machine, *extra]))
    summarise(work, heldout)


def _r2(results_json: Path, session: str) -> float:
    rows = [r for r in json.loads(results_json.read_text()) if r["session"] == session]
    values = [r["r2"] for r in rows if r["r2"] is not None and not math.isnan(r["r2"])]
    return sum(values) / len(values) if values else float("nan")


def _f(x, fmt=".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f} %"


def _curve(path: Path) -> dict[str, dict]:
    return {p["requested"]: p for p in json.loads(path.read_text())} if path.exists() else {}


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{m:.3f} +- {sd:.3f} (n={len(values)})"


def summarise(work: Path, heldout: dict[str, str]) -> None:
    """Print and save the tables: learning curves, reference, goals over seeds, timings."""
    runs = work / "runs"
    timings = {}
    for f in sorted((work / "timings").glob("*.json")) if (work / "timings").exists() else []:
        timings.update(json.loads(f.read_text()))
    tuned = json.loads((work / "tune.json").read_text()) if (work / "tune.json").exists() else None
    lines, out = [], {"sessions": {}, "timings": timings, "tune": tuned}
    nan = float("nan")
    for sid, what in heldout.items():
        ref_file = runs / f"single-{sid}" / "results_test.json"
        ref = _r2(ref_file, sid) if ref_file.exists() else nan
        curves = {rows: _curve(curve_dir(runs, sid, rows) / "learning_curve.json") for rows in NEW_ROWS}
        entry = {"what": what, "single_session_r2": ref, "curves": curves, "finetune_10": None, "seeds": {}}
        lines += [f"{sid} ({what}); single-session training on all training trials: test R^2 {_f(ref)}", "",
                  "| labelled trials | " + " | ".join(f"unit-id, {LABELS[rows]}" for rows in NEW_ROWS)
                  + f" | from scratch | of single ({' / '.join(NEW_ROWS)}) | seconds ({' / '.join(NEW_ROWS)} / scratch) |",
                  "|---" * (len(NEW_ROWS) + 4) + "|"]
        for req in dict.fromkeys(k for c in curves.values() for k in c):
            r2 = {rows: curves[rows].get(req, {}).get("r2_adapt", nan) for rows in NEW_ROWS}
            p = next(c[req] for c in curves.values() if req in c)
            sc = curves["random"].get(req, {}).get("r2_scratch") or nan
            secs = [curves[rows].get(req, {}).get("seconds_adapt") for rows in NEW_ROWS]
            secs.append(curves["random"].get(req, {}).get("seconds_scratch"))
            lines.append(f"| {req} ({p['labelled_trials']}) | " + " | ".join(_f(r2[rows]) for rows in NEW_ROWS)
                         + f" | {_f(sc)} | " + " / ".join(_pct(r2[rows] / ref) for rows in NEW_ROWS)
                         + " | " + " / ".join(_f(x, ".0f") if x is not None else "-" for x in secs) + " |")
        ft_file = runs / f"finetune-{sid}" / "learning_curve.json"
        if ft_file.exists():
            p = json.loads(ft_file.read_text())[0]
            entry["finetune_10"] = p
            lines.append(f"| 10, unit-id+finetune (random rows) | {_f(p['r2_adapt'])} |" + " |" * len(NEW_ROWS) + " "
                         f"{_f(100 * p['r2_adapt'] / ref, '.0f')} % | {_f(p['seconds_adapt'], '.0f')} |")
        scratch10 = curves["random"].get("10", {}).get("r2_scratch")
        lines.append("")
        for rows in NEW_ROWS:
            values = [curves[rows]["10"]["r2_adapt"]] if "10" in curves[rows] else []
            for f in sorted(runs.glob(f"seed*-{rows}-{sid}/learning_curve.json")):
                values.append(json.loads(f.read_text())[0]["r2_adapt"])
            entry["seeds"][rows] = values
            if not values:
                continue
            mean = sum(values) / len(values)
            gain = None if scratch10 is None else mean - scratch10
            lines.append(f"10 trials, {LABELS[rows]}, seeds 0-{len(values) - 1}: {', '.join(f'{v:.3f}' for v in values)}; "
                         f"mean {_mean_sd(values)}; gain over scratch {_f(gain, '+.3f') if gain is not None else '-'} "
                         f"(goal >= +0.15: {'met' if gain is not None and gain >= 0.15 else 'NOT met'}); "
                         f"{_f(100 * mean / ref, '.0f')} % of single-session (goal >= 80 %: "
                         f"{'met' if mean >= 0.8 * ref else 'NOT met'})")
        lines.append("")
        out["sessions"][sid] = entry
    if (runs / "pretrain" / "model.json").exists():
        best = json.loads((runs / "pretrain" / "model.json").read_text())["meta"].get("best", {})
        lines.append(f"pretraining: best valid R^2 {_f(best.get('valid_r2'))} (epoch {best.get('epoch', -1) + 1})")
    if tuned:
        lines.append(f"tuned on valid R^2 of {tuned['session']} at 10 trials: unit-id lr {tuned['lr']:g}, "
                     f"scratch lr {tuned['scratch_lr']:g} ("
                     + ", ".join(f"{t['kind']} {t['lr']:g}: {t['valid_r2']:.3f}" for t in tuned["trials"]) + ")")
    lines.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    text = "\n".join(lines)
    print("\n" + text)
    (work / "summary.md").write_text(text + "\n")
    (work / "summary.json").write_text(json.dumps(out, indent=2, default=str) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=("sim", "real", "summary"))
    p.add_argument("--work", required=True, help="directory for data, runs and tables")
    p.add_argument("--steps", default=None, help=f"comma list among {', '.join(STEPS)} (default: all)")
    p.add_argument("--only", default=None, help="comma list of held-out sessions to run (default: all; e.g. to run them in parallel)")
    p.add_argument("--labelled", default="5,10,20,50,all", help="--labelled-trials of the curve")
    p.add_argument("--goal-seeds", default="1,2", help="more seeds of the 10-trial point (seed 0 is the curve's)")
    p.add_argument("--model", default=json.dumps(SMALL_MODEL), help="POYO fields over poyo-1.3M, as JSON")
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--pretrain-minutes", type=float, default=15.0)
    p.add_argument("--batch-size", type=int, default=32, help="pretraining batch size")
    p.add_argument("--pretrain-lr", type=float, default=None, help="pretraining peak learning rate (default: POYO's 3.125e-5 x batch)")
    p.add_argument("--split-margin", type=float, default=1.0,
                   help="real: prepare's --split-margin (0 keeps the monkeys' abutting trials for training)")
    p.add_argument("--reference-steps", type=int, default=1500)
    p.add_argument("--reference-minutes", type=float, default=8.0)
    p.add_argument("--reference-batch-size", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=3)
    p.add_argument("--tune-lrs", default="3e-3,1e-2,3e-2")
    p.add_argument("--tune-scratch-lrs", default="1e-3,3e-3,1e-2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--adapt-args", default="", help="extra popdecode adapt flags, e.g. '--steps 300' (also used by tune)")
    args = p.parse_args()
    os.environ.setdefault("POPDECODE_PROGRESS", "0")
    if args.experiment == "summary":
        for kind, heldout in (("sim", SIM_HELDOUT), ("real", REAL_HELDOUT)):
            if (Path(args.work) / kind).exists():
                summarise(Path(args.work) / kind, heldout)
        return
    run_experiment(args, kind=args.experiment)


if __name__ == "__main__":
    main()
