"""Data-parallel training over several processes, launched by ``torchrun``.

    torchrun --standalone --nproc_per_node 4 -m popdecode train --data store --out runs/x --batch-size 128

(Across machines, torchrun's ``--nnodes`` and ``--rdzv-endpoint``; every machine must read the
store, and the run directory must be shared, since a resumed run reads its checkpoint in every
process.)

Every process holds a replica of the model; DistributedDataParallel averages their gradients
in every backward pass. What each process does, and why the run is the one a single process
would make:

- **Who am I.** torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`from_env`
  reads them. A plain ``popdecode train`` is a world of one and none of this runs. The
  process group uses NCCL on CUDA (process ``LOCAL_RANK`` takes that GPU) and gloo on the CPU.
- **Windows.** ``--batch-size`` is the *global* batch: each of the N processes takes B / N
  windows per step, so the recipe (learning rate = 3.125e-5 x batch size) does not change
  with N. The train sampler deals each epoch's shuffled list round-robin (process r takes
  windows r, r + N, ...), so the N shards of step k hold exactly the windows of a single
  process's batch k, and unit dropout is seeded by a window's position in the whole list.
- **Loss.** A readout's weighted MSE is ``sum(w * mse) / sum(w)`` over the whole step. Each
  process divides its own ``sum(w * mse)`` by the step's global ``sum(w)`` (one small
  all-reduce before the loss) and multiplies by N, because DistributedDataParallel
  *averages* gradients: the averaged gradient is the single-process gradient, up to the
  order of floating-point sums. With ``--readout-balance windows`` each readout's term is
  also scaled by its share of the whole step's windows (counted in the same all-reduce).
- **The rest** is identical on every process (initial weights, gradients, optimiser steps),
  except the dropout stream: process r seeds torch with ``seed + r`` (rank 0 draws what a
  single process draws). Validation is shared: process r scores sessions r, r + N, ... and
  the scores are gathered, so every process takes the same decisions (best epoch). Rank 0
  alone writes the model, log and checkpoint and shows the progress bar. A time budget stops
  every process after the same step (any process out of time stops them all). The checkpoint
  keeps every process's random-number state: resuming with the same N continues bit for bit.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from popdecode.errors import UserError

# Processes wait for each other in a collective while rank 0 writes checkpoints and while
# validation shares are uneven; the default 10-30 min timeout could kill a large run.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment (a world of one without it)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise UserError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err}); launch with torchrun") from err
    if size < 1 or not 0 <= rank < size:
        raise UserError(f"RANK={rank} is outside WORLD_SIZE={size}; launch with torchrun")
    return World(rank=rank, size=size, local_rank=local_rank)


def start(world: World, device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group; return this process's device and whether we created the group."""
    if not world.distributed:
        return device, False
    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise UserError(f"process {world.rank} wants GPU {world.local_rank} but torch sees "
                            f"{torch.cuda.device_count()}; start at most that many processes per machine")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return device, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return device, True


def local_batch_size(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise UserError(f"--batch-size {batch_size} is the global batch and must divide among the "
                        f"{world.size} processes; use a multiple of {world.size}")
    return batch_size // world.size


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The module to call in training steps: DistributedDataParallel around ``model``, or ``model``.

    Every parameter that trains takes part in every step (see :mod:`popdecode.model.poyo`),
    so no search for unused parameters is needed.
    """
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Sum each value over the processes (one all-reduce)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def step_totals(batch, names: list[str], world: World, device: torch.device, *,
                with_shares: bool) -> tuple[dict[str, torch.Tensor] | None, dict[str, float] | None]:
    """Per readout, over the whole step's windows, in one all-reduce: ``sum(w)`` (None in a
    world of one, where the batch's own is the step's) and, when ``with_shares``
    (``--readout-balance windows``), its share of the windows holding a sample of weight > 0
    (else None)."""
    if not world.distributed and not with_shares:
        return None, None
    sums = [batch.targets[n].weights.sum().double() if n in batch.targets else torch.zeros((), dtype=torch.float64)
            for n in names]
    t = torch.stack([x.to(device) for x in sums])
    if with_shares:
        counts = [batch.windows_supervising(n) for n in names] + [batch.size]
        t = torch.cat([t, torch.tensor(counts, dtype=torch.float64, device=device)])
    if world.distributed:
        dist.all_reduce(t)
    k = len(names)
    totals = dict(zip(names, t[:k].float())) if world.distributed else None
    if not with_shares:
        return totals, None
    counts = t[k:].tolist()
    return totals, {n: counts[i] / max(counts[-1], 1.0) for i, n in enumerate(names)}


def merge(part: dict, world: World) -> dict:
    """The union of every process's ``part`` (each process validates its share of sessions)."""
    if not world.distributed:
        return part
    parts: list = [None] * world.size
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}


def rng_states(world: World, device: torch.device) -> dict[str, torch.Tensor] | None:
    """Every process's random-number states, for rank 0's checkpoint (None in a world of one).

    A collective: every process must call it. Keys: ``rng/torch`` (rank 0's, what a
    single-process resume restores), ``rng/torch/rank{r}`` and, on CUDA, ``rng/cuda/rank{r}``
    (the state of process r's own GPU).
    """
    if not world.distributed:
        return None
    mine = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    every: list = [None] * world.size
    dist.all_gather_object(every, mine)
    out = {"rng/torch": every[0]["torch"].clone()}  # safetensors refuses shared memory
    for r, states in enumerate(every):
        for kind, state in states.items():
            out[f"rng/{kind}/rank{r}"] = state
    return out


def finish(world: World, created: bool) -> None:
    """Wait for every process (rank 0's files are complete when anyone returns), then leave."""
    if world.distributed:
        dist.barrier()
    if created:
        dist.destroy_process_group()
