"""The whole of popdecode in a few minutes on a laptop: simulate, pretrain, adapt, compare, report.

    popdecode quickstart [--out DIR] [--steps N] [--minutes M] [--labelled-trials N]

1. Simulate a small multi-animal reaching dataset (popdecode simulate's simulator): two
   animals, three sessions each, every session recording a different subset of its animal's
   neurons. The last session of the first animal is held out: the model never sees it
   during pretraining. DIR/data/pretrain and DIR/data/heldout are ordinary stores, each
   with the simulator's ground_truth.h5 beside it.
2. Pretrain a small POYO on the other sessions for --steps steps or --minutes minutes,
   whichever comes first, keeping the model with the best validation R^2
   (DIR/runs/pretrained).
3. Adapt it to the held-out session from its first --labelled-trials training trials by
   unit identification: only the new session's unit and session embeddings train, every
   other weight stays as it was (popdecode adapt; DIR/runs/adapted).
4. Score both models on the test trials (popdecode evaluate) and fit the three baselines
   on binned spike counts (popdecode baseline): the Wiener filter on every session, the MLP
   and the GRU on the held-out one. The baselines learn from all of the held-out session's
   training trials; the adapted POYO sees only --labelled-trials of them.
5. Write the HTML report (popdecode report; DIR/report.html) and print the final table:
   session, POYO R^2, adapted R^2, Wiener, MLP, GRU (also DIR/quickstart_results.csv).

The budget is at most about 8 minutes on 2 CPU cores: pretraining stops after 6 minutes
even if its 2,500 steps are not done (a machine busy with other jobs trains fewer steps and
scores lower), and adaptation, baselines, evaluation and the report take the rest. It runs
on one thread by default (--threads). Every stage shows a progress bar. Each stage writes
its files atomically; an interrupted quickstart is re-run with --overwrite.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from popdecode.errors import UserError
from popdecode.utils.atomic import write_text

HELD_OUT_ANIMAL = 0
RESULTS_FILE = "quickstart_results.csv"
LOG_FILE = "quickstart_log.txt"
BASELINES = ("wiener", "mlp", "gru")
# What a quickstart directory holds; --overwrite removes exactly these.
PARTS = ("data", "runs", "baselines", "report.html", RESULTS_FILE, LOG_FILE)


@dataclass(kw_only=True)
class QuickstartConfig:
    """Sizes and budgets of the quickstart; defaults fit about 8 minutes on 2 CPU cores."""

    # data: animals x sessions, of which the last session of animal 0 is held out
    animals: int = 2
    sessions_per_animal: int = 3
    trials_per_session: int = 80
    min_units: int = 30
    max_units: int = 60
    pool_size: int = 100  # neurons per animal: small, so sessions share many (see the report)
    seed: int = 0
    # pretraining: a small POYO without dropout (a short run does not overfit), LAMB at a
    # higher rate than POYO's 3.125e-5 x batch: it leaves the early plateau sooner
    model: dict = field(default_factory=lambda: dict(
        dim=64, depth=2, num_latents_per_step=8, cross_heads=1, self_heads=2,
        ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0))
    pretrain_steps: int = 2500  # the lr schedule's length: flat, then cosine (about 4 min on a quiet core)
    pretrain_minutes: float = 6.0  # whichever comes first: a busy machine stops on time
    batch_size: int = 16
    lr: float = 2e-3
    # adaptation: unit identification at a higher rate and for longer than adapt's defaults
    # (measured on this dataset: 15 trials, 200 steps at 1e-2 gave R^2 0.17; 600 at 3e-2, 0.53)
    # 30 of the held-out session's ~56 training trials: with 20, unit identification beat the
    # Wiener filter on only some seeds (R^2 0.35-0.65 over 8 runs); with 30 on all 5 (0.59-0.69).
    labelled_trials: int = 30
    adapt_steps: int = 600
    # The paper's random rows, with which the README's table was measured; at 20 trials and more
    # adapt's default mixture rows score the same within noise (BENCHMARKS.md, "Adaptation").
    adapt_new_rows: str = "random"
    adapt_lr: float | None = 3e-2  # None: adapt's default for adapt_new_rows
    # baselines (MLP / GRU early-stop on valid; at most this many epochs)
    baseline_epochs: int = 100
    # One thread: a model this small gains little from a second one on a quiet machine, and
    # on a busy one two threads spin-wait on each other (measured: 4 to 25 times slower).
    threads: int = 1

    @classmethod
    def fast(cls) -> "QuickstartConfig":
        """A seconds-long run for tests: tiny data, a tiny model, a handful of steps."""
        return cls(animals=2, sessions_per_animal=2, trials_per_session=14, min_units=12, max_units=20, pool_size=30,
                   model=dict(dim=32, depth=1, num_latents_per_step=4, cross_heads=1, self_heads=1, dim_head=16),
                   pretrain_minutes=0.1, pretrain_steps=8, batch_size=16, labelled_trials=4,
                   adapt_steps=4, baseline_epochs=2)

    @property
    def held_out(self) -> str:
        from popdecode.simulate.simulator import session_id

        return session_id(HELD_OUT_ANIMAL, self.sessions_per_animal - 1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = QuickstartConfig()
    p.add_argument("--out", default="quickstart", metavar="DIR", help="directory to write (default ./quickstart)")
    p.add_argument("--minutes", type=float, default=d.pretrain_minutes,
                   help=f"pretraining time budget in minutes (default {d.pretrain_minutes:g})")
    p.add_argument("--steps", type=int, default=d.pretrain_steps,
                   help=f"most pretraining steps (default {d.pretrain_steps}; the lr schedule spans them)")
    p.add_argument("--labelled-trials", type=int, default=d.labelled_trials,
                   help=f"labelled trials of the held-out session used for adaptation (default {d.labelled_trials})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the simulated data and of training (default 0)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"torch CPU threads (default {d.threads}; more rarely helps a model this small)")
    p.add_argument("--fast", action="store_true", help="a tiny version that runs in seconds (for tests; numbers are meaningless)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier quickstart in DIR")


def run(args: argparse.Namespace) -> int:
    config = QuickstartConfig.fast() if args.fast else QuickstartConfig()
    if not args.fast:
        config.pretrain_minutes = args.minutes
        config.pretrain_steps = args.steps
        config.labelled_trials = args.labelled_trials
    config.seed, config.threads = args.seed, args.threads
    table = run_pipeline(config, args.out, overwrite=args.overwrite)
    print(table)
    return 0


# --- the pipeline ----------------------------------------------------------------------------

def run_pipeline(config: QuickstartConfig, out: str | Path, *, overwrite: bool = False) -> str:
    """Run every stage into ``out``; returns the final table as printed text."""
    if not config.pretrain_minutes > 0:
        raise UserError(f"--minutes must be positive (got {config.pretrain_minutes})")
    if config.pretrain_steps < 1:
        raise UserError(f"--steps must be at least 1 (got {config.pretrain_steps})")
    if config.labelled_trials < 1:
        raise UserError(f"--labelled-trials must be at least 1 (got {config.labelled_trials})")
    if config.threads < 1:
        raise UserError(f"--threads must be at least 1 (got {config.threads})")
    out = Path(out)
    _prepare_directory(out, overwrite)
    import torch

    torch.set_num_threads(config.threads)
    threads = config.threads
    started = time.perf_counter()
    pretrain_dir, heldout_dir = out / "data" / "pretrain", out / "data" / "heldout"
    pretrained, adapted = out / "runs" / "pretrained", out / "runs" / "adapted"
    base = out / "baselines"
    log = out / LOG_FILE
    seconds: dict[str, float] = {}

    def stage(k: int, text: str) -> float:
        print(f"[{k}/6] {text}", flush=True)
        return time.perf_counter()

    t = stage(1, f"simulating {config.animals} animals x {config.sessions_per_animal} sessions "
                 f"(held out: {config.held_out})")
    simulate(config, pretrain_dir, heldout_dir)
    seconds["simulate"] = time.perf_counter() - t

    t = stage(2, f"pretraining POYO: {config.pretrain_steps} steps or {config.pretrain_minutes:g} min, "
                 "whichever comes first")
    with log.open("a") as f, contextlib.redirect_stdout(f):
        result = pretrain(config, pretrain_dir, pretrained)
    best = result["best_valid_r2"]
    print(f"      {result['steps']} steps in {result['elapsed_s']:.0f} s; best valid R^2 "
          f"{'n/a' if best is None else f'{best:.3f}'}")
    seconds["pretrain"] = time.perf_counter() - t

    t = stage(3, f"adapting to {config.held_out} from {config.labelled_trials} labelled trials (unit identification)")
    _call("popdecode.adapt.command", [
        str(pretrained), "--data", str(heldout_dir), "--out", str(adapted), "--mode", "unit-id",
        "--labelled-trials", str(config.labelled_trials), "--steps", str(config.adapt_steps),
        "--new-rows", config.adapt_new_rows, *(["--lr", str(config.adapt_lr)] if config.adapt_lr else []),
        "--seed", str(config.seed), "--threads", str(threads), "--force",
    ], log)
    seconds["adapt"] = time.perf_counter() - t

    t = stage(4, "scoring both models on the test trials")
    adapted_method = f"poyo + unit-id ({config.labelled_trials} trials)"
    _call("popdecode.evaluate.command", [str(pretrained), "--data", str(pretrain_dir), "--method", "poyo"], log)
    _call("popdecode.evaluate.command", [str(adapted), "--data", str(pretrain_dir), str(heldout_dir),
                                         "--method", adapted_method], log)
    seconds["evaluate"] = time.perf_counter() - t

    t = stage(5, "fitting the baselines: Wiener filter (every session), MLP and GRU (held-out session)")
    for model in BASELINES:
        data = [str(pretrain_dir), str(heldout_dir)] if model == "wiener" else [str(heldout_dir)]
        argv = ["--data", *data, "--model", model, "--out", str(base / f"baseline_{model}.csv"),
                "--seed", str(config.seed)]
        if model != "wiener":
            argv += ["--epochs", str(config.baseline_epochs), "--threads", str(threads)]
        _call("popdecode.baselines.command", argv, log)
    torch.set_num_threads(threads)  # the baseline command sets its own
    seconds["baselines"] = time.perf_counter() - t

    t = stage(6, "writing the report")
    from popdecode.report.command import build_report

    report = build_report(
        adapted, compare=[pretrained, *(base / f"baseline_{m}.csv" for m in BASELINES)],
        data=[str(pretrain_dir), str(heldout_dir)], out=out / "report.html",
        title="popdecode quickstart",
    )
    seconds["report"] = time.perf_counter() - t

    header, rows = final_table(config, pretrained, adapted, base)
    write_text(out / RESULTS_FILE, _csv(header, rows))
    total = time.perf_counter() - started
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    return "\n".join([
        "",
        format_final_table(header, rows),
        "",
        f"{config.held_out} was held out of pretraining; the adapted model learned it from "
        f"{config.labelled_trials} labelled trials, the baselines from all of its training trials.",
        f"took {total / 60:.1f} min ({timing}) on {threads} thread(s)",
        f"report: {report}",
        f"table:  {out / RESULTS_FILE}   log of every command: {log}",
    ])


def _prepare_directory(out: Path, overwrite: bool) -> None:
    """Refuse to mix with an earlier quickstart unless asked to replace it."""
    present = [p for p in PARTS if (out / p).exists()]
    if present and not overwrite:
        raise UserError(f"{out} already holds a quickstart ({present[0]}); pass --overwrite or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; choose a directory with --out")
    for p in present:
        path = out / p
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _call(module: str, argv: list[str], log: Path) -> int | None:
    """Run a popdecode command in this process, exactly as its command line would.

    What it prints goes to ``log`` (its progress bars still show): the terminal keeps the
    stage lines and the final table.
    """
    mod = importlib.import_module(module)
    parser = argparse.ArgumentParser(prog=f"popdecode {module}")
    mod.add_arguments(parser)
    args = parser.parse_args(argv)
    with log.open("a") as f, contextlib.redirect_stdout(f):
        print(f"$ popdecode {module.split('.')[1]} {' '.join(argv)}", flush=True)
        return mod.run(args)


def simulate(config: QuickstartConfig, pretrain_dir: Path, heldout_dir: Path) -> None:
    """Simulate the dataset and write it as two stores (pretraining sessions, held-out session)."""
    from popdecode.data.store import StoreWriter
    from popdecode.simulate.ground_truth import save_ground_truth
    from popdecode.simulate.simulator import SimulationConfig, simulate_dataset

    sim = SimulationConfig(
        seed=config.seed, num_animals=config.animals, sessions_per_animal=config.sessions_per_animal,
        trials_per_session=config.trials_per_session, min_units=config.min_units, max_units=config.max_units,
    )
    sim.tuning.pool_size = config.pool_size
    sessions, truth = simulate_dataset(sim)
    for hidden in (truth.rates, truth.latents, truth.command_noise):
        hidden.clear()  # the report needs which neuron each unit is, not the rates
    for directory, keep in ((pretrain_dir, lambda s: s.id != config.held_out),
                            (heldout_dir, lambda s: s.id == config.held_out)):
        with StoreWriter(directory) as writer:
            for s in sessions:
                if keep(s):
                    writer.add(s)
            save_ground_truth(directory, truth)


def pretrain(config: QuickstartConfig, data_dir: Path, run_dir: Path) -> dict:
    """Train POYO on the pretraining store for ``config.pretrain_steps`` or ``pretrain_minutes``."""
    from popdecode.data.store import open_sessions
    from popdecode.tokenize.sampler import TrainWindowSampler
    from popdecode.train.config import TrainConfig
    from popdecode.train.trainer import train_from_scratch

    # The trainer's schedule is counted in epochs: as many as make up pretrain_steps.
    windows = TrainWindowSampler(intervals=[s.split("train") for s in open_sessions([data_dir])]).total_windows
    steps_per_epoch = max(1, math.ceil(windows / config.batch_size))
    epochs = max(1, math.ceil(config.pretrain_steps / steps_per_epoch))
    train = TrainConfig(
        data=[str(data_dir)], preset="poyo-1.3M", model_overrides=dict(config.model), epochs=epochs,
        batch_size=config.batch_size, lr=config.lr, max_steps=config.pretrain_steps,
        time_budget_min=config.pretrain_minutes, eval_every=max(1, epochs // 20), seed=config.seed,
        threads=config.threads,
    )
    return train_from_scratch(train, run_dir)


# --- the final table -------------------------------------------------------------------------

def final_table(config: QuickstartConfig, pretrained: Path, adapted: Path, base: Path) -> tuple[list[str], list[list]]:
    """(header, rows): one row per session, R^2 per method (NaN where not run)."""
    from popdecode.evaluate.results import read_results

    def per_session(path: Path, only: str | None = None) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for r in read_results(path):
            if (only is None or r.session == only) and not math.isnan(r.r2):
                values.setdefault(r.session, []).append(r.r2)
        return {k: sum(v) / len(v) for k, v in values.items()}

    columns = {
        "POYO R^2": per_session(pretrained / "results_test.csv"),
        f"adapted R^2 ({config.labelled_trials} trials)": per_session(adapted / "results_test.csv", config.held_out),
        "Wiener": per_session(base / "baseline_wiener.csv"),
        "MLP": per_session(base / "baseline_mlp.csv"),
        "GRU": per_session(base / "baseline_gru.csv"),
    }
    sessions = sorted({s for c in columns.values() for s in c}, key=lambda s: (s == config.held_out, s))
    rows = [[s, *(c.get(s, math.nan) for c in columns.values())] for s in sessions]
    return ["session", *columns], rows


def format_final_table(header: list[str], rows: list[list]) -> str:
    widths = [max(len(header[0]), *(len(str(r[0])) for r in rows)) + 2] + [max(len(h), 7) + 2 for h in header[1:]]
    lines = ["".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header))]
    for r in rows:
        cells = [str(r[0]).ljust(widths[0])]
        cells += [("-" if math.isnan(v) else f"{v:.3f}").rjust(w) for v, w in zip(r[1:], widths[1:])]
        lines.append("".join(cells))
    return "\n".join(lines)


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in rows:
        writer.writerow([r[0], *("" if math.isnan(v) else f"{v:.6f}" for v in r[1:])])
    return buf.getvalue()
