"""Small synthetic sessions and recording files for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session


def make_session(
    sid: str = "s1", *, units: int = 7, duration: float = 30.0, rate: float = 15.0, n_trials: int = 0, seed: int = 0
) -> Session:
    """Poisson spikes, a 2-D velocity at 100 Hz, optional back-to-back trials, from t = 5 s."""
    rng = np.random.default_rng(seed)
    t0 = 5.0
    n = rng.poisson(rate * units * duration)
    times = np.sort(rng.uniform(t0, t0 + duration, n))
    spike_units = rng.integers(0, units, n)
    ts = t0 + np.arange(0, duration, 0.01)
    vel = rng.standard_normal((len(ts), 2)).astype(np.float32)
    trials = None
    if n_trials:
        edges = np.linspace(t0, t0 + duration, n_trials + 1)
        trials = {"start": edges[:-1], "stop": edges[1:], "target_id": np.arange(n_trials) % 8,
                  "result": np.array(["R", "F"] * (n_trials // 2) + ["R"] * (n_trials % 2))}
    return Session(
        id=sid,
        spike_times=times,
        spike_units=spike_units,
        unit_ids=[f"u{i}" for i in range(units)],
        series={"hand_vel": Series(ts, vel, columns=["vx", "vy"], unit="cm/s"),
                "force": Series(ts[::2].copy(), vel[::2, :1] * 3, columns=["f"], unit="N")},
        targets=["hand_vel"],
        trials=trials,
        intervals={"reach": Intervals(np.array([t0 + 1.0, t0 + 10.0]), np.array([t0 + 2.0, t0 + 12.5]))},
        domain=Intervals(np.array([t0]), np.array([t0 + duration])),
        unit_info={"brain_area": np.array(["M1"] * (units - 1) + ["PMd"])},
        metadata={"subject": "monkey_x", "species": "Macaca mulatta"},
    )


def write_npz(path: Path, session: Session) -> Path:
    """Write ``session`` in the documented .npz layout."""
    arrays = {
        "spike_times": session.spike_times,
        "spike_units": session.spike_units,
        "unit_ids": np.array(session.unit_ids, dtype=str),
        "subject": np.array(session.metadata.get("subject", "")),
    }
    for name, s in session.series.items():
        arrays[f"behavior.{name}.timestamps"] = s.timestamps
        arrays[f"behavior.{name}.values"] = s.values
        arrays[f"behavior.{name}.columns"] = np.array(s.columns, dtype=str)
        arrays[f"behavior.{name}.unit"] = np.array(s.unit)
    if session.trials is not None:
        for col, vals in session.trials.items():
            arrays[f"trials.{col}"] = np.asarray(vals)
    for name, iv in session.intervals.items():
        arrays[f"intervals.{name}.start"] = iv.start
        arrays[f"intervals.{name}.end"] = iv.end
    arrays["domain.start"], arrays["domain.end"] = session.domain.start, session.domain.end
    np.savez(path, **arrays)
    return path


def store_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) with its bytes."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
