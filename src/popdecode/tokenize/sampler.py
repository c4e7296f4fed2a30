"""Which windows to read: random tiles for training, overlapping tiles for evaluation.

Both samplers yield ``(session_index, t0)``: the position of the session in the list of
intervals they were given, and the absolute start of a window of ``window_length`` seconds.

**Training** (spec section 4): each epoch, every train interval of at least one window is
tiled with back-to-back windows starting at a random offset in [0, window_length), and all
windows of all sessions are shuffled together. Shifting the tiling every epoch shows the
model every moment at a different place in its window. The leftover at the two ends
(offset + remainder) is one more window whenever it adds up to a full one; it goes to the
end of the interval when the right leftover is the larger, else to the start. So an interval
of length L gives exactly floor(L / window_length) windows every epoch, and ``len`` is fixed.

**Sharing an epoch among sessions** (``sampling``). An epoch always holds the same number
of windows (the sum above), so schedules, progress bars and ``--epochs`` keep their meaning;
what changes is how they are dealt among sessions. Session i has n_i windows per epoch
(its train duration, in windows):

- ``"duration"`` (the paper's draw): every session gives its n_i windows, once each.
- ``"sqrt"``: session i gets a share proportional to sqrt(n_i).
- ``"session"``: every session gets the same share.
- a list of numbers, one per session: shares proportional to them.

Short sessions then see their windows several times per epoch, at fresh offsets, and long
ones a part of theirs. Shares are turned into whole counts c_i that add up to the epoch by
stochastic rounding (floor, plus one more window for sessions picked by systematic sampling
on the fractional parts), so the expected count is exactly the share. A session with c_i < n_i gives a random subset of its tiling; one with
c_i > n_i gives its whole tiling, then further tilings at fresh random offsets, the last one
subsampled. When every c_i equals n_i (duration sampling, or one session) the list is the
duration draw itself, bit for bit.

**Evaluation** (spec section 7): windows every ``step`` seconds from each interval's start,
the last one aligned to the interval's end, so every sample is predicted by one or more
windows and the stitcher averages overlaps. An interval shorter than one window gets one
window starting at its start (it reaches past the interval; the stitcher drops predictions
outside the evaluated intervals).

**Distributed training.** Every rank builds the same global list (it depends only on
``seed`` and the epoch) and takes every ``world_size``-th window from position ``rank``:
shards are disjoint and together complete. They differ in length by at most one window;
``pad=True`` repeats the first windows of the list so that every rank gets the same number
(what DistributedDataParallel needs to keep ranks in step), at the cost of seeing a few
windows twice per epoch.

**Resuming.** The order is a pure function of (seed, epoch), so resuming mid-epoch is
``load_state_dict({"epoch": e, "position": k})``: the next iteration starts at the k-th window
of this rank's shard (k = windows already consumed, e.g. batches done x batch size).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from popdecode.data.intervals import Intervals

_EPS = 1e-9  # floating-point slack when deciding whether a window fits in an interval
SAMPLING_MODES = ("duration", "session", "sqrt")


def session_weights(windows_per_session: list[int], sampling: str | list[float]) -> np.ndarray:
    """Each session's share of an epoch's windows (sums to 1 over sessions with any window).

    ``windows_per_session``: how many windows each session's tiling holds (its train duration
    in windows). ``sampling``: a mode of :data:`SAMPLING_MODES` or one weight per session.
    A session without a single window gets no share whatever its weight.
    """
    n = np.asarray(windows_per_session, dtype=np.float64)
    if isinstance(sampling, str):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)} or a list of weights, got {sampling!r}")
        raw = {"duration": n, "session": np.ones_like(n), "sqrt": np.sqrt(n)}[sampling]
    else:
        raw = np.asarray(sampling, dtype=np.float64)
        if raw.shape != n.shape:
            raise ValueError(f"{len(raw)} sampling weights for {len(n)} sessions")
        if not np.all(np.isfinite(raw)) or np.any(raw < 0):
            raise ValueError("sampling weights must be finite and >= 0")
    raw = np.where(n > 0, raw, 0.0)
    if raw.sum() <= 0:
        return np.zeros_like(n)
    return raw / raw.sum()


def _tile(rng: np.random.Generator, intervals: Intervals, w: float) -> np.ndarray:
    """Window starts of one tiling of ``intervals`` at random offsets (one draw per interval)."""
    starts = []
    for s, e in intervals:
        length = e - s
        if length < w - _EPS:
            continue  # too short for one window: dropped (spec section 4)
        offset = rng.random() * w
        n = int(math.floor((length - offset) / w + _EPS))
        t0 = s + offset + w * np.arange(n)
        right = e - (s + offset + n * w)
        if offset + right >= w - _EPS:
            t0 = np.append(t0, e - w if right > offset else s)
        starts.append(t0)
    return np.concatenate(starts) if starts else np.zeros(0)


def _round_shares(shares: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Whole counts adding up to ``total`` whose expectations are ``shares`` (which add up to it).

    Each count is its share's floor, plus one for the sessions that systematic sampling picks
    with probability equal to the fractional part.
    """
    counts = np.floor(shares + _EPS).astype(np.int64)
    left = total - int(counts.sum())
    if left <= 0:
        return counts
    frac = np.clip(shares - counts, 0.0, None)
    frac *= left / frac.sum()  # add up to ``left`` exactly, whatever the rounding
    picks = np.searchsorted(np.cumsum(frac), rng.random() + np.arange(left), side="right")
    np.add.at(counts, np.minimum(picks, len(counts) - 1), 1)
    return counts


def _check_common(window_length: float, rank: int, world_size: int) -> None:
    if not window_length > 0:
        raise ValueError(f"window_length must be positive, got {window_length}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")


def _shard(items: list, rank: int, world_size: int, pad: bool) -> list:
    if world_size == 1:
        return items
    if pad and len(items) % world_size:
        extra = world_size - len(items) % world_size
        items = items + [items[i % len(items)] for i in range(extra)] if items else items
    return items[rank::world_size]


class TrainWindowSampler(torch.utils.data.Sampler):
    """Shuffled, randomly offset tiles over each session's train intervals.

    Args (keyword-only):
        intervals: the train split of each session, in session order.
        window_length: seconds per window.
        seed: with the epoch, fixes offsets and order.
        rank, world_size: this process's shard (see the module docstring).
        pad: equalise shard lengths by repeating windows (for DDP).
        sampling: how an epoch is shared among sessions: ``"duration"`` (every window once),
            ``"session"``, ``"sqrt"`` or one weight per session (see the module docstring).
    """

    def __init__(
        self,
        *,
        intervals: list[Intervals],
        window_length: float = 1.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
        sampling: str | list[float] = "duration",
    ):
        _check_common(window_length, rank, world_size)
        self.intervals = list(intervals)
        self.window_length = float(window_length)
        self.sampling = sampling if isinstance(sampling, str) else [float(x) for x in sampling]
        self.seed = int(seed)
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)
        self.epoch = 0
        self.position = 0  # windows of this rank's shard to skip on the next iteration
        self._cache: tuple[int, list[tuple[int, float]]] | None = None  # (epoch, its windows)
        self._per_session = [
            sum(int(math.floor((e - s) / self.window_length + _EPS)) for s, e in iv if e - s >= self.window_length - _EPS)
            for iv in self.intervals
        ]
        self._total = sum(self._per_session)
        self.weights = session_weights(self._per_session, self.sampling)  # each session's share

    # -- epoch / resume ---------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose windows the next iteration yields (from its start)."""
        self.epoch = int(epoch)
        self.position = 0

    def state_dict(self) -> dict:
        """Epoch and start position of the current iteration (the sampler does not count what
        a DataLoader consumed, since loaders prefetch: store the consumer's own count)."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields this rank's windows of ``epoch`` from ``position``."""
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state is for seed {state['seed']}, this sampler has seed {self.seed}")
        self.epoch = int(state["epoch"])
        self.position = int(state.get("position", 0))

    # -- the windows --------------------------------------------------------------------
    @property
    def total_windows(self) -> int:
        """Windows per epoch over all ranks (before padding)."""
        return self._total

    def epoch_windows(self, epoch: int | None = None) -> list[tuple[int, float]]:
        """The whole epoch's shuffled list, all ranks together (rank r takes ``[r::world_size]``)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return list(self._cache[1])
        windows = self._build(epoch)
        self._cache = (epoch, windows)
        return list(windows)

    def _build(self, epoch: int) -> list[tuple[int, float]]:
        rng = np.random.default_rng([self.seed, epoch])
        w = self.window_length
        tilings = [_tile(rng, iv, w) for iv in self.intervals]  # the duration draw
        if self.sampling != "duration":
            # A second stream, so that the first (offsets, then order) is the duration draw's.
            extra = np.random.default_rng([self.seed, epoch, 1])
            counts = _round_shares(self._total * self.weights, self._total, extra)
            tilings = [self._resample(extra, iv, t0, int(c)) for iv, t0, c in zip(self.intervals, tilings, counts)]
        sessions = [np.full(len(t0), si, dtype=np.int64) for si, t0 in enumerate(tilings)]
        if not any(len(t0) for t0 in tilings):
            return []
        sessions = np.concatenate(sessions)
        starts = np.concatenate(tilings)
        order = rng.permutation(len(starts))
        return list(zip(sessions[order].tolist(), starts[order].tolist()))

    def _resample(self, rng: np.random.Generator, intervals: Intervals, first: np.ndarray, count: int) -> np.ndarray:
        """``count`` window starts of one session: whole tilings at fresh offsets, the last subsampled."""
        n = len(first)
        if count == n or n == 0:
            return first
        parts, tiling = [], first
        while count >= n:
            parts.append(tiling)
            count -= n
            tiling = _tile(rng, intervals, self.window_length)
        if count:
            parts.append(np.sort(tiling[rng.choice(n, size=count, replace=False)]))
        return np.concatenate(parts)

    def rank_windows(self, epoch: int | None = None) -> list[tuple[int, float]]:
        """This rank's shard of an epoch (position 0 onwards)."""
        return _shard(self.epoch_windows(epoch), self.rank, self.world_size, self.pad)

    def indexed_windows(self, epoch: int | None = None) -> list[tuple[int, float, int]]:
        """This rank's shard as ``(session_index, t0, global_position)``.

        The global position (index in :meth:`epoch_windows`) identifies a window for
        random augmentation independently of the number of ranks.
        """
        items = [(s, t, i) for i, (s, t) in enumerate(self.epoch_windows(epoch))]
        return _shard(items, self.rank, self.world_size, self.pad)

    def window_at(self, i: int, epoch: int | None = None) -> tuple[int, float, int]:
        """Item ``i`` of this rank's shard as ``(session_index, t0, global_position)``."""
        self.epoch_windows(epoch)  # fills the cache
        windows = self._cache[1]
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for a shard of {len(self)}")
        position = (self.rank + i * self.world_size) % len(windows)  # wraps only when padded
        s, t = windows[position]
        return s, t, position

    def __len__(self) -> int:
        """Windows of this rank's shard per epoch."""
        n, k = self._total, self.world_size
        if self.pad:
            return math.ceil(n / k)
        return len(range(self.rank, n, k))

    def __iter__(self):
        for s, t in self.rank_windows()[self.position :]:
            yield s, t


class EvalWindowSampler(torch.utils.data.Sampler):
    """Overlapping windows over each interval, in order, last one aligned to its end.

    Args (keyword-only):
        intervals: the evaluated intervals (valid or test trials) of each session.
        window_length: seconds per window.
        step: seconds between window starts (0.5: every sample seen by about two windows).
        rank, world_size: shard of the windows (disjoint and complete; no padding, since
            evaluation keeps no ranks in step).
    """

    def __init__(
        self,
        *,
        intervals: list[Intervals],
        window_length: float = 1.0,
        step: float = 0.5,
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_common(window_length, rank, world_size)
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")
        self.intervals = list(intervals)
        self.window_length = float(window_length)
        self.step = float(step)
        self.rank, self.world_size = int(rank), int(world_size)
        self._all = self._build()
        self._mine = _shard(self._all, self.rank, self.world_size, pad=False)

    def _build(self) -> list[tuple[int, float]]:
        w, step = self.window_length, self.step
        out: list[tuple[int, float]] = []
        for si, iv in enumerate(self.intervals):
            for s, e in iv:
                if e - s <= w + _EPS:
                    out.append((si, float(s)))  # one window; a short interval's is not end-aligned
                    continue
                n = int(math.floor((e - w - s) / step + _EPS)) + 1  # starts s, s+step, ... <= e-w
                starts = s + step * np.arange(n)
                if starts[-1] + w < e - _EPS:
                    starts = np.append(starts, e - w)
                out.extend((si, t) for t in starts.tolist())
        return out

    @property
    def windows(self) -> list[tuple[int, float]]:
        """This rank's windows, in order."""
        return list(self._mine)

    def __len__(self) -> int:
        return len(self._mine)

    def __iter__(self):
        return iter(self._mine)
