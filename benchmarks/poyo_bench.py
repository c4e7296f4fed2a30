"""Shared pieces of the model benchmarks (train_throughput.py, inference.py, scaling.py).

Synthetic windows that look like real ones (a session's ~100 units, each with its two
delimiter tokens, ~900 spikes at variable rates, 100 Hz behaviour queries), a popdecode POYO
and a torch-brain POYO holding the *same* weights (copied through the converter), both
layouts of the same windows (our packed Batch; their padded tensors, padded to a multiple
of 8 as their collate does), and a timing loop that alternates the two models step by step
so that the load of a shared machine hits both alike.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
import types
from contextlib import nullcontext

import numpy as np
import torch

from popdecode.model import POYO, PRESETS
from popdecode.model.convert import from_torch_brain
from popdecode.tokenize.batch import Batch


def machine(device: torch.device | str = "cpu") -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), platform.processor())
    except OSError:
        name = platform.processor()
    if on_gpu(device):
        name = f"{torch.cuda.get_device_name(device)} (host {name}, CUDA {torch.version.cuda})"
    return f"{name}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def bf16_units() -> str:
    """The CPU's bfloat16 matrix features as /proc/cpuinfo names them ('' where it has none)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return ""
    return " ".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def synthetic_windows(n: int, *, units: int = 100, spikes: int = 900, outputs: int = 100, sessions: int = 4,
                      spread: float = 0.25, seed: int = 0) -> list[dict]:
    """``n`` windows of ``sessions`` sessions, each with every unit's two delimiters plus a
    variable number of spikes (log-normal around ``spikes``, sd ``spread`` in log units) and
    about ``outputs`` query times (+-10 %)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = i % sessions
        k = max(1, int(round(spikes * rng.lognormal(0.0, spread)))) if spread else spikes
        m = int(rng.integers(int(outputs * 0.9), int(outputs * 1.1) + 1)) if spread else outputs
        rows = 1 + s * units + np.arange(units)
        rate = rng.gamma(1.0, 1.0, units)  # some units fire much more than others
        out.append(dict(
            session=s,
            units=np.concatenate([np.repeat(rows, 2), rng.choice(rows, k, p=rate / rate.sum())]),
            types=np.concatenate([np.tile([1, 2], units), np.zeros(k, dtype=np.int64)]),
            times=np.concatenate([np.tile([0.0, 1.0], units), np.sort(rng.random(k))]).astype(np.float32),
            out_times=np.sort(rng.random(m)).astype(np.float32),
            targets=rng.standard_normal((m, 2)).astype(np.float32),
        ))
    return out


def pack(windows: list[dict]) -> tuple[Batch, torch.Tensor]:
    """Our packed batch and its targets [M, 2]."""
    cat = lambda key, dt: torch.from_numpy(np.concatenate([w[key] for w in windows])).to(dt)  # noqa: E731
    batch = Batch(
        input_units=cat("units", torch.int64), input_types=cat("types", torch.int64),
        input_times=cat("times", torch.float32),
        input_lengths=torch.tensor([len(w["units"]) for w in windows]),
        session_index=torch.tensor([w["session"] + 1 for w in windows]),
        output_times=cat("out_times", torch.float32),
        output_lengths=torch.tensor([len(w["out_times"]) for w in windows]),
        output_readout=torch.zeros(sum(len(w["out_times"]) for w in windows), dtype=torch.int64),
    )
    return batch, cat("targets", torch.float32)


def pad_reference(windows: list[dict], model: POYO) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """torch-brain's padded inputs (pad8 on tokens, as its collate), targets [B, M, 2], mask."""
    b = len(windows)
    n = max(len(w["units"]) for w in windows); n += -n % 8
    m = max(len(w["out_times"]) for w in windows)
    x = dict(
        input_unit_index=torch.zeros(b, n, dtype=torch.int64), input_token_type=torch.zeros(b, n, dtype=torch.int64),
        input_timestamps=torch.zeros(b, n, dtype=torch.float64), input_mask=torch.zeros(b, n, dtype=torch.bool),
        latent_index=model.latent_rows[None].expand(b, -1).contiguous(),
        latent_timestamps=model.latent_times.double()[None].expand(b, -1).contiguous(),
        session_index=torch.tensor([w["session"] + 1 for w in windows]),
        output_timestamps=torch.zeros(b, m, dtype=torch.float64), output_mask=torch.zeros(b, m, dtype=torch.bool),
    )
    targets = torch.zeros(b, m, 2)
    for i, w in enumerate(windows):
        k, q = len(w["units"]), len(w["out_times"])
        x["input_unit_index"][i, :k] = torch.from_numpy(w["units"])
        x["input_token_type"][i, :k] = torch.from_numpy(w["types"])
        x["input_timestamps"][i, :k] = torch.from_numpy(w["times"].astype(np.float64))
        x["input_mask"][i, :k] = True
        x["output_timestamps"][i, :q] = torch.from_numpy(w["out_times"].astype(np.float64))
        x["output_mask"][i, :q] = True
        targets[i, :q] = torch.from_numpy(w["targets"])
    return x, targets, x["output_mask"]


def make_models(preset: str, *, units: int = 100, sessions: int = 4, reference: bool = True, seed: int = 0):
    """(ours, theirs or None) with the same weights; theirs is torch-brain's POYO."""
    c = PRESETS[preset]
    torch.manual_seed(seed)
    names = [f"s{s}/u{u}" for s in range(sessions) for u in range(units)]
    if not reference:
        ours = POYO(config=c, readouts={"hand_vel": 2})
        ours.unit_vocab.add(names)
        ours.session_vocab.add([f"s{s}" for s in range(sessions)])
        return ours, None
    ReferencePOYO = reference_poyo_class()

    hp = dict(sequence_length=c.window_length, latent_step=c.latent_step, num_latents_per_step=c.num_latents_per_step,
              dim=c.dim, depth=c.depth, dim_head=c.dim_head, cross_heads=c.cross_heads, self_heads=c.self_heads,
              ffn_dropout=c.ffn_dropout, lin_dropout=c.lin_dropout, atn_dropout=c.atn_dropout)
    theirs = ReferencePOYO(dim_out=2, **hp)
    theirs.unit_emb.initialize_vocab(names)
    theirs.session_emb.initialize_vocab([f"s{s}" for s in range(sessions)])
    return from_torch_brain(dict(theirs.state_dict()), hp), theirs


def reference_poyo_class():
    """torch-brain's POYO class.

    Importing torch-brain's models imports its dataset-building pipeline, which imports ray
    (a cluster scheduler) at module level; the model never calls it. Where ray is not
    installed (the lent GPU machine's image has none, and ray's wheel is larger than what
    can be carried there) a stand-in module with the few names those imports bind is
    registered first, so that the model class can be imported and compared."""
    try:
        import ray  # noqa: F401
    except ImportError:
        ray = types.ModuleType("ray")
        ray.__path__ = []
        ray.remote = lambda *a, **k: a[0] if len(a) == 1 and callable(a[0]) and not k else (lambda f: f)
        actor, util, pool = (types.ModuleType(f"ray.{n}") for n in ("actor", "util", "util.actor_pool"))
        util.__path__ = []
        actor.ActorHandle, pool.ActorPool = object, object
        ray.actor, ray.util, util.actor_pool = actor, util, pool
        sys.modules.update({"ray": ray, "ray.actor": actor, "ray.util": util, "ray.util.actor_pool": pool})
    from torch_brain.models import POYO as ReferencePOYO

    return ReferencePOYO


def autocast(precision: str, device: torch.device | str = "cpu"):
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def on_gpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def sync(device: torch.device | str) -> None:
    """Wait for the work queued on ``device``: CUDA runs asynchronously, and a clock read
    without this would time only the kernels' launch."""
    if on_gpu(device):
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device | str) -> float:
    """Start measuring a peak of GPU memory; returns what is allocated now, MiB (0 on a CPU)."""
    if not on_gpu(device):
        return 0.0
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / 2**20


def peak_memory_mib(device: torch.device | str) -> float | None:
    """The most GPU memory allocated since :func:`reset_peak_memory`, MiB (None on a CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu(device) else None


def to_device(x, device: torch.device | str):
    """``x`` (a tensor, a Batch, a dict of tensors or None) on ``device``."""
    if x is None or isinstance(x, (torch.Tensor, Batch)):
        return x if x is None else x.to(device)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in x.items()}


def summary(times: list[float]) -> dict:
    s = sorted(times)
    return dict(median=statistics.median(s), p99=s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))], n=len(s))


def timed(fn, device: torch.device | str = "cpu") -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0
