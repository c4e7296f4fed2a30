"""What the simulator knows and the decoders do not: tuning, hidden unit identities, true rates.

Saved beside the simulated store as ``ground_truth.h5`` (HDF5, no pickles)::

    attrs: format, version, config (the SimulationConfig as JSON), rate_step (s)
    animals/<subject>/<tuning array>        one row per pool neuron (see NeuronPool)
    sessions/<session id>/                  attrs: animal
        unit_pool_index  int64 [units]      which pool neuron each unit of the session is
        session_gain     float64 [units]    per-session multiplicative change of its rate
        rates            float32 [T, units] true rates in Hz at t = k * rate_step
        latents          float32 [T, d]     shared fluctuations unrelated to behaviour
        command_noise    float32 [T, 2]     cm/s added to the hand velocity the neurons encode

Two units of one animal's sessions are the same neuron exactly when their
``unit_pool_index`` agree; the unit ids themselves do not reveal it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from popdecode.errors import UserError
from popdecode.simulate.neurons import NeuronPool
from popdecode.utils.atomic import atomic_path

FILENAME = "ground_truth.h5"
FORMAT = "popdecode-simulation-ground-truth"
VERSION = 1
HIDDEN = ("rates", "latents", "command_noise")  # per-session arrays on the rate grid


@dataclass
class GroundTruth:
    config: dict  # the SimulationConfig, as plain JSON-able values
    rate_step: float  # s between rate samples (the behaviour's sample period)
    pools: dict[str, NeuronPool] = field(default_factory=dict)  # subject -> pool
    session_animal: dict[str, str] = field(default_factory=dict)  # session id -> subject
    unit_pool_index: dict[str, np.ndarray] = field(default_factory=dict)
    session_gain: dict[str, np.ndarray] = field(default_factory=dict)
    rates: dict[str, np.ndarray] = field(default_factory=dict)  # empty when not loaded
    latents: dict[str, np.ndarray] = field(default_factory=dict)
    command_noise: dict[str, np.ndarray] = field(default_factory=dict)  # cm/s [T, 2]

    def session_tuning(self, session_id: str) -> NeuronPool:
        """The tuning of each unit of a session, in the session's unit order."""
        pool = self.pools[self.session_animal[session_id]]
        return pool.subset(self.unit_pool_index[session_id])


def save_ground_truth(directory: str | os.PathLike, truth: GroundTruth) -> Path:
    """Write ``directory/ground_truth.h5`` atomically; returns its path."""
    path = Path(directory) / FILENAME
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = json.dumps(truth.config)
        f.attrs["rate_step"] = truth.rate_step
        for subject, pool in truth.pools.items():
            g = f.create_group(f"animals/{subject}")
            for name, values in pool.arrays().items():
                g.create_dataset(name, data=values)
        for sid, index in truth.unit_pool_index.items():
            g = f.create_group(f"sessions/{sid}")
            g.attrs["animal"] = truth.session_animal[sid]
            g.create_dataset("unit_pool_index", data=np.asarray(index, dtype=np.int64))
            g.create_dataset("session_gain", data=truth.session_gain[sid])
            for name in HIDDEN:
                data = getattr(truth, name).get(sid)
                if data is not None:
                    g.create_dataset(name, data=data.astype(np.float32), compression="gzip",
                                     compression_opts=1, shuffle=True, chunks=True)
    return path


def load_ground_truth(directory: str | os.PathLike, *, rates: bool = True) -> GroundTruth:
    """Read the ground truth of a simulated dataset (``directory`` or the .h5 file itself).

    ``rates=False`` skips the true rates, latents and command noise (the bulk of the file).
    """
    path = Path(directory)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise UserError(f"no ground truth at {path}; simulate a dataset with `popdecode simulate --out DIR`")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise UserError(f"{path} is not a popdecode simulation ground truth file")
        truth = GroundTruth(config=json.loads(f.attrs["config"]), rate_step=float(f.attrs["rate_step"]))
        for subject, g in f["animals"].items():
            truth.pools[subject] = NeuronPool(**{k: g[k][()] for k in g})
        for sid, g in f["sessions"].items():
            truth.session_animal[sid] = str(g.attrs["animal"])
            truth.unit_pool_index[sid] = g["unit_pool_index"][()]
            truth.session_gain[sid] = g["session_gain"][()]
            if rates:
                for name in HIDDEN:
                    if name in g:
                        getattr(truth, name)[sid] = g[name][()]
    return truth
