"""Which recipe ``popdecode train`` follows when its command line leaves something unsaid.

POYO's published recipe (spec sections 4 and 5: poyo-1.3M, LAMB at 3.125e-5 x batch 32,
every window of every session once per epoch, 100 epochs) was made for tens of hours of
recordings on GPUs. On a few minutes of reaching (the three real monkey sessions) on a CPU
it sits on its initial loss plateau for most of the time a user is willing to wait
(BENCHMARKS.md, "A first run that works"). So the command picks a recipe by the amount of
training data:

- ``small-data`` (less than :data:`SMALL_DATA_HOURS` of training intervals): poyo-1.3M made
  shallower and narrower in its latents (depth 2, 8 latents per step, 1 cross-attention and
  2 self-attention heads), a 6x higher rate at batch 16 (3e-3), and as many epochs as make
  :data:`SMALL_DATA_WINDOWS` training windows (~4,000 steps, whatever the data's size);
  validation about 20 times per run. It gives every session the same share of each epoch
  (``session``) and weighs every window the same in the loss whatever it decodes
  (``readout_balance="windows"``), the pair that worked best on the joint real set
  (BENCHMARKS.md, "What costs Mihi in the joint model").
- ``paper``: the published recipe, exactly, with the paper's duration-weighted draw.
- On :data:`TUNING_FROM_SESSIONS` sessions or more, ``auto`` and ``small-data`` start the unit
  embeddings from each unit's tuning (``unit_init="tuning"``, :mod:`popdecode.train.unit_init`):
  from 8 simulated sessions it keeps the run off the plateau that otherwise grows with the
  number of sessions, and adapts better; on 1-4 sessions and on the 5-session real pool the
  random start was as good or better (BENCHMARKS.md, "Unit embeddings that start from tuning").
- ``auto`` (the default): ``small-data`` below the threshold, else ``paper``'s model and
  optimiser with sessions drawn by ``sqrt`` of their duration (BENCHMARKS.md, "Sampling
  across sessions"; not measured at that size).

Every flag the user gives wins over the recipe; ``--preset`` given alone drops the recipe's
changes to the preset. :class:`popdecode.train.config.TrainConfig` itself keeps the paper's
values as its defaults: the recipe is the command's, and the run's ``train_config.json``
records what was resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from popdecode.errors import UserError

RECIPES = ("auto", "small-data", "paper")
SMALL_DATA_HOURS = 5.0
SMALL_DATA_WINDOWS = 64_000
SMALL_DATA_VALIDATIONS = 20
TUNING_FROM_SESSIONS = 8


@dataclass(frozen=True)
class Recipe:
    name: str
    preset: str = "poyo-1.3M"
    model_overrides: dict = field(default_factory=dict)
    batch_size: int = 32
    lr: float | None = None  # None: POYO's 3.125e-5 x batch size
    sampling: str = "sqrt"
    readout_balance: str = "readouts"  # TrainConfig.readout_balance
    unit_init: str = "random"  # TrainConfig.unit_init
    windows: int | None = None  # training windows of the run (epochs follow); None: ``epochs``
    epochs: int = 100
    why: str = ""


PAPER = Recipe(name="paper", sampling="duration", why="the published recipe")
SMALL_DATA = Recipe(
    name="small-data",
    model_overrides={"depth": 2, "num_latents_per_step": 8, "cross_heads": 1, "self_heads": 2},
    batch_size=16, lr=3e-3, windows=SMALL_DATA_WINDOWS,
    sampling="session", readout_balance="windows",  # see the module docstring
)


def train_hours(sessions: Sequence) -> float:
    return sum(s.split("train").duration for s in sessions) / 3600.0


def _amount(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def choose(name: str, sessions: Sequence) -> Recipe:
    """The recipe ``name`` stands for on these sessions (``auto`` looks at their size)."""
    if name not in RECIPES:
        raise UserError(f"--recipe must be one of {', '.join(RECIPES)} (got {name!r})")
    hours = train_hours(sessions)
    if name == "paper":
        return PAPER
    if name == "small-data" or hours < SMALL_DATA_HOURS:
        why = (f"{_amount(hours)} of training data, under {SMALL_DATA_HOURS:g} h" if name == "auto"
               else "asked for with --recipe small-data")
        chosen = replace(SMALL_DATA, why=why)
    else:
        chosen = Recipe(name="auto", why=f"{_amount(hours)} of training data: the paper's model and rate, sqrt draw")
    if len(sessions) >= TUNING_FROM_SESSIONS:
        chosen = replace(chosen, unit_init="tuning",
                         why=f"{chosen.why}; {len(sessions)} sessions: unit rows start from tuning")
    return chosen


def epochs_for(recipe: Recipe, windows_per_epoch: int) -> int:
    """Epochs that make the recipe's number of training windows (at least one)."""
    if recipe.windows is None:
        return recipe.epochs
    return max(1, math.ceil(recipe.windows / max(windows_per_epoch, 1)))


def resolve(recipe: Recipe, given: dict, windows_per_epoch: int) -> dict:
    """TrainConfig fields: those in ``given`` that are not None, the rest from ``recipe``.

    ``given`` holds the user's values for preset, model_overrides, batch_size, lr, sampling,
    readout_balance, unit_init, epochs and eval_every (None or empty where the flag was not given).
    """
    preset_given = given.get("preset") is not None
    overrides = {} if preset_given else dict(recipe.model_overrides)
    overrides.update(given.get("model_overrides") or {})
    epochs = given["epochs"] if given.get("epochs") is not None else epochs_for(recipe, windows_per_epoch)
    if given.get("eval_every") is not None:
        eval_every = given["eval_every"]
    else:  # about SMALL_DATA_VALIDATIONS validations when the recipe sizes the run, else every epoch
        eval_every = 1 if recipe.windows is None else max(1, epochs // SMALL_DATA_VALIDATIONS)
    return {
        "preset": given["preset"] if preset_given else recipe.preset,
        "model_overrides": overrides,
        "batch_size": given["batch_size"] if given.get("batch_size") is not None else recipe.batch_size,
        "lr": given["lr"] if given.get("lr") is not None else recipe.lr,
        "sampling": given["sampling"] if given.get("sampling") is not None else recipe.sampling,
        "readout_balance": (given["readout_balance"] if given.get("readout_balance") is not None
                            else recipe.readout_balance),
        "unit_init": given["unit_init"] if given.get("unit_init") is not None else recipe.unit_init,
        "epochs": epochs,
        "eval_every": eval_every,
    }


def describe(recipe: Recipe, fields: dict) -> str:
    """One line for the terminal: which recipe, why, and what it set."""
    opts = " ".join(f"{k}={v}" for k, v in fields["model_overrides"].items())
    lr = "3.125e-5 x batch" if fields["lr"] is None else f"{fields['lr']:g}"
    return (f"recipe {recipe.name} ({recipe.why}): {fields['preset']}{' ' + opts if opts else ''}, "
            f"batch {fields['batch_size']}, lr {lr}, {fields['epochs']} epochs, sampling {fields['sampling']}, "
            f"readout balance {fields['readout_balance']}, unit init {fields['unit_init']}"
            + ("" if recipe.name == "paper" else "; --recipe paper for the published recipe"))
