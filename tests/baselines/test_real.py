"""The Wiener filter on a real monkey recording decodes hand velocity as measured.

Reference: BENCHMARKS.md, "Baselines (issue 5)": with the 100 ms bins the files were made
from (current bin included) the test R^2 of mihi_20140303 was 0.707 on 2026-11-22.
"""

from __future__ import annotations

import pytest

from popdecode.cli import main
from popdecode.evaluate.results import read_results



@pytest.mark.realdata
def test_wiener_on_a_real_monkey_session(real_data, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["prepare", str(real_data / "mihi_20140303.nwb"), "--out", str(store)]) == 0
    out = tmp_path / "wiener.csv"
    assert main(["baseline", "--data", str(store), "--model", "wiener",
                 "--bin", "0.1", "--lags", "4", "--future", "1", "--out", str(out)]) == 0
    (row,) = read_results(out)
    # 42 test trials at 10 Hz, every sample counted (these files carry no eval mask).
    assert (row.session, row.split, row.n_timestamps) == ("mihi_20140303", "test", 214)
    assert 0.6 < row.r2 < 0.8, row
