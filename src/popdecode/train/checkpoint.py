"""Resumable training state: everything needed to continue a run exactly where it stopped.

A run directory holds the best model so far (``model.safetensors`` + ``model.json``, written
by :func:`popdecode.model.io.save_model`) and, in ``RUN/checkpoint/``, the latest state:

``checkpoint/model.safetensors``, ``checkpoint/model.json``
    the current weights (the same format as the best model, so a checkpoint also loads
    with ``load_model``);
``checkpoint/optimizer.safetensors``
    the optimiser's per-parameter state (moments, step counts) and the random-number
    generator states (torch CPU, and CUDA when used), as tensors;
``checkpoint/state.json``
    where the run stands: epoch, steps done in that epoch, global step, best score, elapsed
    time, the log rows so far, and the optimiser's parameter-group settings.

The data order needs no saving: it is a pure function of (seed, epoch) and the position in
the epoch. The model's dropout draws from torch's global generator, whose state is saved;
so a run stopped after any step and resumed ends with the same weights, bit for bit, as
one never stopped. Under ``torchrun`` (:mod:`popdecode.train.distributed`) rank 0 writes the
checkpoint with every process's generator states (``rng/torch/rank{r}``), and each process
restores its own. The directory is written to a temporary sibling and renamed, so a crash
while saving leaves the previous checkpoint intact. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from popdecode.utils.atomic import atomic_path

CHECKPOINT_DIR = "checkpoint"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Flatten an optimiser's state dict into named tensors plus JSON-able group settings."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"state/{idx}/{key}"] = value.detach().cpu().contiguous()
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, groups


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith("state/"):
            continue
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    param_groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def save_checkpoint(
    run_dir: str | Path,
    *,
    model: torch.nn.Module,
    meta: dict,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ``RUN/checkpoint/`` atomically (see the module docstring).

    ``rng``: the generator states to keep (default: this process's); several processes
    pass :func:`popdecode.train.distributed.rng_states`.
    """
    from popdecode.model.io import save_model

    tensors, groups = _optimizer_tensors(optimizer)
    if rng is None:
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{i}"] = s
    else:
        tensors.update(rng)
    with atomic_path(Path(run_dir) / CHECKPOINT_DIR) as tmp:
        tmp.mkdir()
        save_model(tmp, model, meta)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**progress, "param_groups": groups}, indent=1) + "\n")


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_DIR / "state.json").exists()


def load_checkpoint(
    run_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0,
) -> dict[str, Any]:
    """Restore weights, optimiser state and RNG states in place; return the progress dict.

    ``rank``: which process of a ``torchrun`` world this is. It restores its own generator
    states where the checkpoint has them; a process the checkpoint knows nothing of (a
    resume with more processes) keeps the generator its caller seeded.
    """
    from popdecode.model.io import load_model

    ckpt = Path(run_dir) / CHECKPOINT_DIR
    saved_model, _ = load_model(ckpt, device="cpu")
    with torch.no_grad():
        model.load_state_dict(saved_model.state_dict())
    progress = json.loads((ckpt / "state.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    _load_optimizer(optimizer, tensors, progress.pop("param_groups"))
    if f"rng/torch/rank{rank}" in tensors:
        torch.set_rng_state(tensors[f"rng/torch/rank{rank}"])
        if f"rng/cuda/rank{rank}" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rng/cuda/rank{rank}"])
        return progress
    if rank != 0:
        return progress
    torch.set_rng_state(tensors["rng/torch"])
    # A single process's states, one per device: rng/cuda/0, rng/cuda/1, ...
    devices = sorted(int(k.rsplit("/", 1)[1]) for k in tensors
                     if k.startswith("rng/cuda/") and k.rsplit("/", 1)[1].isdigit())
    cuda_states = [tensors[f"rng/cuda/{i}"] for i in devices]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return progress
