"""A multi-animal, multi-session reaching dataset with known ground truth.

The benchmark the project is developed on. The recipe:

1. Every animal gets a pool of neurons with its own tuning (:mod:`.neurons`) and its own
   reaching speed.
2. Every session of that animal records a random subset of the pool (``min_units`` to
   ``max_units`` units) under fresh unit ids, so sessions share neurons but the
   correspondence is hidden; animals never share neurons.
3. The session's behaviour is simulated (:mod:`.reaching`), then its true rates (on the
   100 Hz behaviour grid) and spikes. Trials are dealt 70/10/20 to train/valid/test by
   :func:`popdecode.data.splits.assign_splits` (seeded by ``seed`` and the session id).

Everything is drawn from generators seeded by ``(seed, animal, session)``, so the result
is deterministic and a session does not change when more animals or sessions are asked for.
The defaults are tuned so that a ridge decoder on 20 ms counts with 10 causal lags reaches
an R^2 of roughly 0.6 to 0.8 on held-out reaches while the command noise leaves a ceiling
near 0.9 for better decoders (see tests/simulate/test_difficulty.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from popdecode.data.intervals import Intervals
from popdecode.data.session import Series, Session
from popdecode.data.splits import assign_splits
from popdecode.simulate.ground_truth import GroundTruth
from popdecode.simulate.neurons import TuningConfig, draw_pool, draw_spikes, firing_rates
from popdecode.simulate.reaching import TASKS, ReachingConfig, simulate_reaching, smooth_noise, task_signals
from popdecode.utils.progress import progress

TASK_CHOICES = (*TASKS, "mixed")
SPECIES = "simulated macaque"


@dataclass
class SimulationConfig:
    """Every knob of the simulation. ``task="mixed"`` alternates center-out (even session
    index) and random-target (odd) within each animal."""

    seed: int = 0
    num_animals: int = 2
    sessions_per_animal: int = 4
    task: str = "mixed"
    trials_per_session: int = 120
    min_units: int = 30
    max_units: int = 250
    animal_speed_factor: tuple[float, float] = (0.85, 1.2)  # reach durations x this, per animal
    reaching: ReachingConfig = field(default_factory=ReachingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)

    def to_dict(self) -> dict:
        """Plain JSON values (tuples become lists), as saved in the ground truth."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "SimulationConfig":
        """The inverse of :meth:`to_dict` (e.g. ``from_dict(load_ground_truth(dir).config)``)."""
        def tuples(sub: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()}
        d = tuples(d)
        d["reaching"] = ReachingConfig(**tuples(d["reaching"]))
        d["tuning"] = TuningConfig(**tuples(d["tuning"]))
        return cls(**d)

    def validate(self) -> None:
        """Raise ValueError on settings that cannot produce a dataset."""
        if self.task not in TASK_CHOICES:
            raise ValueError(f"task must be one of {', '.join(TASK_CHOICES)}, not {self.task!r}")
        if self.num_animals < 1 or self.sessions_per_animal < 1 or self.trials_per_session < 2:
            raise ValueError("need at least 1 animal, 1 session per animal and 2 trials per session")
        if not 1 <= self.min_units <= self.max_units <= self.tuning.pool_size:
            raise ValueError(
                f"need 1 <= min_units <= max_units <= pool_size, got {self.min_units}, "
                f"{self.max_units}, {self.tuning.pool_size}"
            )


def subject_id(animal: int) -> str:
    return f"sim-a{animal}"


def session_id(animal: int, session: int) -> str:
    return f"sim-a{animal}-s{session}"


def session_task(config: SimulationConfig, session: int) -> str:
    if config.task != "mixed":
        return config.task
    return TASKS[session % 2]


def simulate_session(config: SimulationConfig, animal: int, session: int, pool, speed_factor: float):
    """One session: the :class:`Session`, the pool index and gain of its units, and its hidden
    signals (true ``rates``, shared ``latents``, ``command_noise``) as float32 arrays."""
    rng = np.random.default_rng([config.seed, animal, session + 1])
    tcfg, rcfg = config.tuning, config.reaching
    task = session_task(config, session)
    behaviour = simulate_reaching(
        rng, task=task, num_trials=config.trials_per_session, config=rcfg, speed_factor=speed_factor,
    )
    dt = 1.0 / rcfg.sample_rate
    num_units = int(rng.integers(config.min_units, config.max_units + 1))
    pool_index = rng.choice(pool.size, size=num_units, replace=False)  # random order too
    gain = np.exp(rng.normal(0.0, tcfg.session_gain_sd, num_units))
    T = len(behaviour.timestamps)
    latents = np.concatenate([
        tcfg.global_gain_sd * smooth_noise(rng, T, 1, tcfg.global_gain_timescale / dt),
        smooth_noise(rng, T, tcfg.latent_dim, tcfg.latent_timescale / dt),
    ], axis=1)
    preparation, onset = task_signals(behaviour)
    speed = np.hypot(behaviour.velocity[:, 0], behaviour.velocity[:, 1])[:, None]
    command_noise = (tcfg.command_noise_sd + tcfg.command_noise_speed * speed) * smooth_noise(
        rng, T, 2, tcfg.command_noise_timescale / dt)
    rates = firing_rates(
        pool.subset(pool_index), tcfg, position=behaviour.position, velocity=behaviour.velocity,
        latents=latents, command_noise=command_noise, preparation=preparation, onset=onset,
        dt=dt, session_gain=gain,
    )
    spike_times, spike_units = draw_spikes(rng, rates, dt=dt, refractory_period=tcfg.refractory_period)

    t = behaviour.timestamps
    intervals = dict(behaviour.phases)
    intervals["eval"] = behaviour.phases["reach"]
    sess = Session(
        id=session_id(animal, session),
        spike_times=spike_times,
        spike_units=spike_units,
        unit_ids=[f"unit-{i:03d}" for i in range(num_units)],
        series={
            "hand_vel": Series(t, behaviour.velocity, ["vx", "vy"], "cm/s"),
            "hand_pos": Series(t, behaviour.position, ["x", "y"], "cm"),
        },
        targets=["hand_vel"],
        trials=behaviour.trials,
        intervals=intervals,
        domain=Intervals(np.array([0.0]), np.array([behaviour.end])),
        metadata={
            "subject": subject_id(animal),
            "species": SPECIES,
            "task": task,
            "source": f"popdecode simulate seed={config.seed}",
        },
    )
    sess = assign_splits(sess, seed=config.seed)
    hidden = {"rates": rates, "latents": latents, "command_noise": command_noise}
    return sess, pool_index, gain, {k: v.astype(np.float32) for k, v in hidden.items()}


def simulate_dataset(config: SimulationConfig, *, show_progress: bool = True) -> tuple[list[Session], GroundTruth]:
    """Simulate every session of every animal; returns the sessions and their ground truth."""
    config.validate()
    truth = GroundTruth(config=config.to_dict(), rate_step=1.0 / config.reaching.sample_rate)
    sessions: list[Session] = []
    bar_options = {} if show_progress else {"disable": True}
    bar = progress(total=config.num_animals * config.sessions_per_animal, desc="simulate",
                   unit="session", **bar_options)
    for animal in range(config.num_animals):
        rng = np.random.default_rng([config.seed, animal, 0])
        pool = draw_pool(rng, config.tuning)
        speed_factor = float(rng.uniform(*config.animal_speed_factor))
        truth.pools[subject_id(animal)] = pool
        for s in range(config.sessions_per_animal):
            sess, index, gain, hidden = simulate_session(config, animal, s, pool, speed_factor)
            sessions.append(sess)
            truth.session_animal[sess.id] = subject_id(animal)
            truth.unit_pool_index[sess.id] = index
            truth.session_gain[sess.id] = gain
            truth.rates[sess.id] = hidden["rates"]
            truth.latents[sess.id] = hidden["latents"]
            truth.command_noise[sess.id] = hidden["command_noise"]
            bar.update(1)
    bar.close()
    return sessions, truth
