"""Simulate a multi-animal reaching dataset, with its ground truth, into a store.

    popdecode simulate --out DIR [--animals A] [--sessions-per-animal S] [--seed N]

Each animal has its own pool of simulated motor-cortex neurons (baseline rates of 1 to 40 Hz,
tuning to hand velocity, speed and position through an exponential nonlinearity, lags of 0
to 150 ms, preparatory activity, a transient at movement onset, a slow shared gain drift, a
share of untuned neurons, a 2 ms refractory period); each session records 30 to 250 of them
under fresh unit ids, while the animal performs center-out or random-target reaches (hand
velocity and position at 100 Hz; R^2 is evaluated on the reach periods). Trials are split
70/10/20 into train/valid/test. With the defaults a Wiener filter (20 ms bins, 10 lags)
reaches a test R^2 of about 0.6 to 0.8 per session; better decoders have room above it.

DIR becomes a store (as made by `popdecode prepare`) holding sessions sim-a<A>-s<S>, plus
DIR/ground_truth.h5: every animal's tuning, which pool neuron each unit is, and the true
rates. The same seed always gives the same dataset. On any error nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from popdecode.data.store import StoreWriter
from popdecode.errors import UserError
from popdecode.simulate.ground_truth import FILENAME, save_ground_truth
from popdecode.simulate.simulator import TASK_CHOICES, SimulationConfig, simulate_dataset
from popdecode.utils.progress import progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulationConfig()
    parser.add_argument("--out", required=True, metavar="DIR", help="store directory to create (or add to)")
    parser.add_argument("--animals", type=int, default=d.num_animals, metavar="A", help=f"number of animals (default: {d.num_animals})")
    parser.add_argument("--sessions-per-animal", type=int, default=d.sessions_per_animal, metavar="S",
                        help=f"sessions recorded from each animal (default: {d.sessions_per_animal})")
    parser.add_argument("--seed", type=int, default=d.seed, metavar="N", help=f"random seed; same seed, same data (default: {d.seed})")
    parser.add_argument("--trials-per-session", type=int, default=d.trials_per_session, metavar="T",
                        help=f"trials per session (default: {d.trials_per_session}; a center-out trial lasts "
                             "about 2.8 s, a random-target reach about 1.3 s)")
    parser.add_argument("--task", choices=TASK_CHOICES, default=d.task,
                        help="reaching task; 'mixed' alternates center-out and random-target sessions (default: mixed)")
    parser.add_argument("--min-units", type=int, default=d.min_units, metavar="U", help=f"fewest units per session (default: {d.min_units})")
    parser.add_argument("--max-units", type=int, default=d.max_units, metavar="U", help=f"most units per session (default: {d.max_units})")
    parser.add_argument("--pool-size", type=int, default=d.tuning.pool_size, metavar="P",
                        help=f"neurons in each animal's pool (default: {d.tuning.pool_size})")
    parser.add_argument("--no-rates", action="store_true",
                        help="leave the true rates out of ground_truth.h5 (a much smaller file)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace sessions and ground truth already in DIR")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    config = SimulationConfig(
        seed=args.seed, num_animals=args.animals, sessions_per_animal=args.sessions_per_animal,
        task=args.task, trials_per_session=args.trials_per_session,
        min_units=args.min_units, max_units=args.max_units,
    )
    config.tuning.pool_size = args.pool_size
    try:
        config.validate()
    except ValueError as err:
        raise UserError(f"{err}; change the options of `popdecode simulate`") from None
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    out = Path(args.out)
    if (out / FILENAME).exists() and not args.overwrite:
        raise UserError(f"{out} already holds a simulated dataset; pass --overwrite or choose another --out")
    # All or nothing: the writer checks DIR before the (seconds-long) simulation, and its
    # files are renamed into place only if the ground truth was written too (which itself
    # appears only when its block succeeds).
    with StoreWriter(out, overwrite=args.overwrite) as writer:
        sessions, truth = simulate_dataset(config)
        if args.no_rates:
            truth.rates.clear()
            truth.latents.clear()
            truth.command_noise.clear()
        for session in progress(sessions, desc="write", unit="session"):
            writer.add(session)
        save_ground_truth(out, truth)
    units = sum(s.num_units for s in sessions)
    minutes = sum(s.duration for s in sessions) / 60
    print(f"wrote {len(sessions)} sessions ({units} units, {minutes:.1f} min) and {FILENAME} to {out}")
    return 0
