"""Shared fixtures: where the real recordings are, and quiet progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("POPDECODE_PROGRESS", "0")

# The real NWB files live beside the checkout (read-only); CI clones next to them too.
REAL_DATA = Path(os.environ.get("POPDECODE_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
MONKEY_FILES = ("chewie_20131003.nwb", "chewie_20131219.nwb", "mihi_20140303.nwb")
RAT_FILES = ("rat_linear_track.nwb", "rat_w_maze.nwb")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real NWB recordings; skips the test when it is absent."""
    if not (REAL_DATA / MONKEY_FILES[0]).exists():
        pytest.skip(f"real recordings not found at {REAL_DATA} (set POPDECODE_REAL_DATA to their folder)")
    return REAL_DATA
