"""Unlabelled spikes of the new session, put to work: align decoded behaviour to a prior.

With ten labelled center-out trials some reach directions are usually missing (the first ten
training trials of the simulated held-out sessions cover 5 and 6 of the 8 targets), and unit
identification has nothing telling it how the new units behave when the hand moves that way.
The rest of the session's training split holds those reaches; only their behaviour is
unknown. What *is* known is what behaviour looks like: the model was pretrained on sessions of
the same task, whose hand velocities fill the same few lobes.

So adaptation can add a second term to its loss (``popdecode adapt --align W``): on windows
drawn from the new session's whole train split, the model's decoded behaviour during
movement should be distributed like the pretraining sessions' behaviour during movement.
This is the idea of distribution-alignment decoding (Dyer et al., Nat. Biomed. Eng. 2017,
"DAD"), used here as a regulariser beside the supervised loss, not instead of it. The
distance between the two sets of samples is the sliced Wasserstein distance: both are
projected on random directions, sorted, and compared quantile by quantile (for 1-D
behaviour, one exact 1-D Wasserstein distance). It is cheap, differentiable and needs no
density estimate.

Three pieces:

* :func:`behaviour_prior`: samples of a readout, normalised as the model sees it, from the
  samples of sessions whose loss weight is at least ``min_weight`` (with the default weights:
  reach 5 and return 1, not hold 0.1, i.e. movement; every sample of sessions that mark no
  movement phases). Built from the pretraining sessions.
* :func:`sliced_wasserstein`: the distance.
* :class:`AlignmentLoss`: the term the trainer adds each step (``fit(extra_loss=...)``): a
  batch of unlabelled windows of the new sessions (same tokenizer and unit dropout as
  training), the model's predictions at their movement samples, the distance to the prior,
  times the weight.

Of the new session the term uses its spikes and its movement phases (interval sets from the
trial table, e.g. movement onset to reach end), never its behaviour values; windows stay
inside the train split, so neither valid nor test spikes are seen.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch

from popdecode.errors import UserError
from popdecode.tokenize.collate import collate
from popdecode.tokenize.dataset import WindowDataset
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.tokenize.tokenizer import loss_weights_at

PRIOR_SAMPLES = 20_000  # per readout: plenty for 1-D quantiles, small enough to keep in memory


def behaviour_prior(
    sessions: Sequence,
    readout: str,
    normalization: tuple[np.ndarray, np.ndarray],
    *,
    loss_weights: dict[str, float],
    min_weight: float = 1.0,
    max_samples: int = PRIOR_SAMPLES,
    seed: int = 0,
) -> torch.Tensor:
    """Normalised samples [N, D] of ``readout`` in the train splits of ``sessions`` whose loss
    weight (the tokenizer's rule, :func:`~popdecode.tokenize.tokenizer.loss_weights_at`) is at
    least ``min_weight``: movement where the sessions mark movement phases, every sample but
    outliers where they mark none. If no session adds anything this is a :class:`UserError`.
    """
    mean, std = (np.asarray(v, dtype=np.float32) for v in normalization)
    chunks = []
    for s in sessions:
        if readout not in s.series:
            continue
        series = s.series[readout]
        weights = loss_weights_at(s.intervals, series.timestamps, loss_weights)
        keep = (weights >= min_weight) & s.split("train").contains(series.timestamps)
        values = series.values[keep]
        chunks.append(values[np.isfinite(values).all(axis=1)])
    values = np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)
    if len(values) == 0:
        raise UserError(
            f"no samples of '{readout}' during movement (interval sets weighted >= {min_weight:g}) in the "
            "prior sessions; give --prior-data with sessions of the same task, or drop --align"
        )
    if len(values) > max_samples:
        values = values[np.random.default_rng(seed).choice(len(values), max_samples, replace=False)]
    return torch.from_numpy(((values - mean) / std).astype(np.float32))


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, *, projections: int = 64,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared sliced 2-Wasserstein distance between samples ``x`` [N, D] and ``y`` [M, D].

    Sorted projections are paired quantile by quantile, so ``y`` is brought to N points: used as
    it is when M == N, else N of them drawn (without replacement when M > N).
    """
    n, d = x.shape
    if len(y) > n:
        y = y[torch.randperm(len(y), generator=generator)[:n]]
    elif len(y) < n:
        y = y[torch.randint(0, len(y), (n,), generator=generator)]
    y = y.to(x.device, x.dtype)
    if d == 1:
        directions = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    else:
        directions = torch.randn(d, projections, generator=generator).to(x.device, x.dtype)
        directions = directions / directions.norm(dim=0, keepdim=True)
    px = torch.sort(x @ directions, dim=0).values
    py = torch.sort(y @ directions, dim=0).values
    return (px - py).pow(2).mean()


class AlignmentLoss:
    """``weight x`` the sliced Wasserstein distance between decoded movement and the prior.

    Args (keyword-only):
        sessions: the new sessions (their whole train split supplies the windows).
        tokenizer: the training tokenizer (unit dropout, loss weights) for those sessions.
        priors: readout -> prior samples from :func:`behaviour_prior`.
        weight: the loss weight W (``--align W``).
        min_weight: predictions count as "movement" where the tokenizer's loss weight of the
            sample is at least this (the same rule as the prior).
        batch_size: unlabelled windows per step.
        seed: window order, unit dropout and projections.
    """

    def __init__(self, *, sessions: Sequence, tokenizer, priors: dict[str, torch.Tensor], weight: float,
                 min_weight: float = 1.0, batch_size: int = 16, seed: int = 0):
        window_length = float(tokenizer.config.window_length)
        # The sampler skips train intervals shorter than a window, as in training.
        sampler = TrainWindowSampler(intervals=[s.split("train") for s in sessions],
                                     window_length=window_length, seed=seed)
        if sampler.total_windows == 0:
            raise UserError("--align: the new sessions have no train interval long enough for one window")
        self.sampler = sampler
        self.dataset = WindowDataset(sessions, tokenizer, windows=sampler, seed=seed, train=True)
        self.priors, self.weight, self.min_weight, self.batch_size = priors, float(weight), float(min_weight), batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._batches = self._stream()
        self.last = float("nan")  # the last distance, for logs

    def _stream(self):
        for epoch in itertools.count():
            self.sampler.load_state_dict({"epoch": epoch, "position": 0})
            yield from torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, sampler=self.dataset.keys(), collate_fn=collate,
                generator=torch.Generator(),
            )

    def __call__(self, model, device: torch.device) -> torch.Tensor:
        batch = next(self._batches).to(device)
        predictions = model(batch)
        total = None
        for name, prior in self.priors.items():
            if name not in predictions or name not in batch.targets:
                continue
            moving = batch.targets[name].weights >= self.min_weight
            if int(moving.sum()) < 2:
                continue
            term = sliced_wasserstein(predictions[name][moving].float(), prior, generator=self.generator)
            total = term if total is None else total + term
        if total is None:  # no movement in these windows: nothing to align (the trainer adds
            return torch.zeros((), device=device)  # this to the supervised loss, which has a graph)
        self.last = float(total.detach())
        return self.weight * total


def prior_sessions(meta: dict, data: Sequence[str] | None = None, *, needed_by: str = "--align") -> list:
    """The sessions a model was trained on, opened from ``data`` (default: the stores its
    training recorded), for :func:`behaviour_prior`. A :class:`UserError` says what to pass
    when they cannot be found; ``needed_by`` names the option that needs them."""
    from pathlib import Path

    from popdecode.data.store import open_sessions

    wanted = list(dict.fromkeys(list(meta.get("pretrained_sessions", [])) + list(meta.get("sessions", []))))
    stores = list(data or meta.get("train_config", {}).get("data", []) or [])
    missing = [p for p in stores if not Path(p).is_dir()]
    if not stores or missing:
        where = f"{missing[0]} is not there" if missing else "the model does not record where its data was"
        raise UserError(f"{needed_by} needs the sessions the model was trained on, but {where}; "
                        "pass --prior-data STORE with those (or other same-task) sessions")
    opened = open_sessions(stores)
    chosen = [s for s in opened if s.id in wanted] if data is None else opened
    if not chosen:
        raise UserError(f"{needed_by}: none of the model's training sessions is in {', '.join(stores)}; "
                        "pass --prior-data STORE with sessions of the same task")
    return [s.load() for s in chosen]
