"""A PyTorch dataset of tokenized windows, and the DataLoader around it.

:class:`WindowDataset` maps an item to a :class:`TokenizedWindow`. Two ways to index it:

- an integer ``i``: the i-th window of a fixed list (evaluation: ``list(EvalWindowSampler)``,
  or :func:`~popdecode.tokenize.causal.causal_windows`, whose items also name the times to answer);
- a key ``(session_index, t0, epoch, position)`` as yielded by :meth:`WindowDataset.keys`
  (training with a :class:`TrainWindowSampler`).

Unit dropout needs randomness. Taking it from a generator that lives in the dataset would
make results depend on which worker process got which window, and would lose its place on
resume. Instead each window's generator is seeded from ``(seed, epoch, position)``, all of
which travel inside the key; so a run gives the same tokens with 0 or 8 workers, with
persistent workers that never see ``set_epoch``, and after resuming mid-epoch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from popdecode.tokenize.collate import collate
from popdecode.tokenize.sampler import TrainWindowSampler
from popdecode.tokenize.tokenizer import Tokenizer


class _TrainKeys(torch.utils.data.Sampler):
    """Yields ``(session_index, t0, epoch, position)`` for the train sampler's current epoch."""

    def __init__(self, sampler: TrainWindowSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return max(len(self.sampler) - self.sampler.position, 0)

    def __iter__(self):
        epoch = self.sampler.epoch
        for s, t, i in self.sampler.indexed_windows(epoch)[self.sampler.position :]:
            yield (s, t, epoch, i)


class WindowDataset(torch.utils.data.Dataset):
    """Tokenized windows of a list of sessions.

    Args:
        sessions: the sessions, in the order the windows' ``session_index`` refers to
            (in-memory :class:`~popdecode.data.session.Session` or store sessions).
        tokenizer: the model's :class:`Tokenizer`.
        windows (keyword-only): a list of ``(session_index, t0)`` (or ``(session_index, t0,
            queries)``, see :meth:`Tokenizer.__call__`), or a :class:`TrainWindowSampler`.
        seed: seeds unit dropout, together with the epoch and the window's position.
        train: apply the training augmentation (unit dropout, when the tokenizer's config
            enables it). Evaluation windows are deterministic.
    """

    def __init__(
        self,
        sessions: Sequence,
        tokenizer: Tokenizer,
        *,
        windows: list[tuple[int, float]] | TrainWindowSampler,
        seed: int = 0,
        train: bool = False,
    ):
        self.sessions = list(sessions)
        self.tokenizer = tokenizer
        self.seed = int(seed)
        self.train = bool(train)
        if isinstance(windows, TrainWindowSampler):
            self.sampler: TrainWindowSampler | None = windows
            self.windows = None
        else:
            self.sampler = None
            self.windows = [(int(w[0]), float(w[1]), w[2] if len(w) > 2 else None) for w in windows]

    def __len__(self) -> int:
        return len(self.sampler) if self.sampler is not None else len(self.windows)

    def keys(self) -> torch.utils.data.Sampler:
        """The DataLoader sampler: keys of this epoch's windows (or plain indices for a list)."""
        if self.sampler is not None:
            return _TrainKeys(self.sampler)
        return torch.utils.data.SequentialSampler(range(len(self.windows)))

    def rng_for(self, epoch: int, position: int) -> np.random.Generator | None:
        """The unit-dropout generator of one window (None outside training)."""
        if not self.train:
            return None
        return np.random.default_rng([self.seed, int(epoch), int(position)])

    def __getitem__(self, item):
        if isinstance(item, tuple):
            session_index, t0, epoch, position = item
        elif self.sampler is not None:
            # Integer access to a sampler-backed dataset: this process's current epoch.
            epoch = self.sampler.epoch
            session_index, t0, position = self.sampler.window_at(int(item), epoch)
        else:
            session_index, t0, queries = self.windows[int(item)]
            return self.tokenizer(self.sessions[session_index], t0, rng=self.rng_for(0, int(item)), queries=queries)
        return self.tokenizer(self.sessions[int(session_index)], float(t0), rng=self.rng_for(epoch, position))


def make_loader(
    dataset: WindowDataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    persistent_workers: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader that yields packed :class:`~popdecode.tokenize.batch.Batch` objects.

    For training, call ``sampler.set_epoch(e)`` (or ``load_state_dict`` to resume) before
    iterating the loader each epoch; the order is already shuffled by the sampler.
    """
    kwargs = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=dataset.keys(),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # A private generator: iterating a DataLoader draws a worker base seed from its
        # generator, which must not be torch's global one (it drives model dropout, and a
        # resumed run must see the same stream).
        generator=torch.Generator(),
        **kwargs,
    )
