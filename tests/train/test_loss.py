"""The step's loss: each readout's weighted mean, and how readouts weigh against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from popdecode.tokenize.batch import ReadoutTargets, TokenizedWindow
from popdecode.tokenize.collate import collate
from popdecode.train.distributed import World, step_totals
from popdecode.train.loop import weighted_mse


def window(readout: str, n_out: int, weights: np.ndarray, rng) -> TokenizedWindow:
    return TokenizedWindow(
        session_id=readout, session_index=0, window_start=0.0,
        input_units=np.zeros(3, np.int64), input_types=np.zeros(3, np.int64), input_times=np.zeros(3, np.float32),
        output_times=np.linspace(0, 1, n_out, dtype=np.float32), output_readout=np.zeros(n_out, np.int64),
        targets={readout: ReadoutTargets(index=np.arange(n_out), values=rng.normal(size=(n_out, 2)).astype(np.float32),
                                         weights=weights.astype(np.float32), eval_mask=np.ones(n_out, bool))},
    )


@pytest.fixture
def batch():
    # Three windows of readout "vel" (10 samples each, one window weighted 0 throughout) and
    # one of "pos" (60 samples): a monkey-and-rat batch in miniature.
    rng = np.random.default_rng(0)
    ws = [window("vel", 10, rng.uniform(0.1, 5, 10), rng), window("vel", 10, np.zeros(10), rng),
          window("pos", 60, np.ones(60), rng), window("vel", 10, rng.uniform(0.1, 5, 10), rng)]
    return ws, collate(ws)


def reference_term(ws, name, predictions):
    """sum(w * mse) / sum(w) of one readout, from the windows themselves."""
    num = den = 0.0
    for w in ws:
        t = w.targets.get(name)
        if t is None:
            continue
        mse = ((predictions - t.values.astype(np.float64)) ** 2).mean(axis=1)
        num += float((t.weights * mse).sum())
        den += float(t.weights.sum())
    return num / den


def test_windows_supervising_counts_windows_with_weight(batch):
    _, b = batch
    assert b.windows_supervising("vel") == 2  # the all-zero window does not count
    assert b.windows_supervising("pos") == 1
    assert b.windows_supervising("force") == 0
    totals, shares = step_totals(b, ["pos", "vel"], World(), torch.device("cpu"), with_shares=True)
    assert totals is None and shares == {"pos": 0.25, "vel": 0.5}  # one process: the batch's own sums


def test_readout_balance_weighs_terms_by_window_share(batch):
    ws, b = batch
    preds = {name: torch.full((len(t.index), 2), 0.3) for name, t in b.targets.items()}  # one row per target
    vel, pos = reference_term(ws, "vel", 0.3), reference_term(ws, "pos", 0.3)
    # "readouts": each readout once, however few windows carry it
    assert float(weighted_mse(preds, b)) == pytest.approx(vel + pos, rel=1e-6)
    # "windows": each by its share of the batch's four windows
    _, shares = step_totals(b, ["pos", "vel"], World(), torch.device("cpu"), with_shares=True)
    assert float(weighted_mse(preds, b, shares=shares)) == pytest.approx(0.5 * vel + 0.25 * pos, rel=1e-6)
