"""The Wiener filter on the real monkey recordings decodes hand velocity as measured.

Reference: BENCHMARKS.md, "Baselines (issue 5)": with the 100 ms bins the files were made
from (current bin included) the test R^2 were 0.567, 0.597 and 0.707 on 2026-11-22.
"""

from __future__ import annotations

import pytest

from popdecode.cli import main
from popdecode.evaluate.results import read_results

MONKEY_FILES = ("chewie_20131003.nwb", "chewie_20131219.nwb", "mihi_20140303.nwb")


@pytest.mark.realdata
def test_wiener_on_real_monkey_sessions(real_data, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["prepare", *(str(real_data / f) for f in MONKEY_FILES), "--out", str(store)]) == 0
    out = tmp_path / "wiener.csv"
    assert main(["baseline", "--data", str(store), "--model", "wiener",
                 "--bin", "0.1", "--lags", "4", "--future", "1", "--out", str(out)]) == 0
    rows = {r.session: r for r in read_results(out)}
    assert sorted(rows) == sorted(f[:-4] for f in MONKEY_FILES)
    # Test trials (20%) at 10 Hz, every sample counted (these files carry no eval mask).
    assert {s: r.n_timestamps for s, r in rows.items()} == {
        "chewie_20131003": 331, "chewie_20131219": 177, "mihi_20140303": 214}
    for r in rows.values():
        assert 0.5 < r.r2 < 0.8, r
