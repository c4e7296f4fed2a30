"""A small simulated dataset shared by the simulator tests (simulated once per test run)."""

from __future__ import annotations

import pytest

from popdecode.simulate.simulator import SimulationConfig, simulate_dataset


def small_config(**overrides) -> SimulationConfig:
    """2 animals x 2 sessions of 30 trials: about a second to simulate."""
    kw = dict(seed=7, num_animals=2, sessions_per_animal=2, trials_per_session=30)
    kw.update(overrides)
    return SimulationConfig(**kw)


@pytest.fixture(scope="session")
def small_dataset():
    return simulate_dataset(small_config(), show_progress=False)
