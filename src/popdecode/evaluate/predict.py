"""Predict a split the way the field scores it (spec section 7), and score it.

1. Windows of 1 s every 0.5 s over each valid/test trial, the last one aligned to the
   trial's end (:class:`~popdecode.tokenize.sampler.EvalWindowSampler`).
2. The model answers every behaviour sample inside each window.
3. Predictions of the same sample from overlapping windows are averaged and put back on
   the session clock (:class:`~popdecode.tokenize.stitch.Stitcher`), in the readout's
   original units.
4. R^2 per (session, readout) over the samples in the eval mask (e.g. the reach period),
   averaged over output dimensions (:func:`~popdecode.evaluate.metrics.r2_score`).

``causal=True`` replaces steps 1-3 with what a live decoder does: one window per sample,
ending at it, answered at the window's end (:mod:`popdecode.tokenize.causal`).

Used by the trainer (validation after each epoch) and by ``popdecode evaluate``.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import torch

from popdecode.evaluate.metrics import r2_score
from popdecode.evaluate.results import ResultRow
from popdecode.tokenize.causal import causal_windows
from popdecode.tokenize.collate import collate
from popdecode.tokenize.dataset import WindowDataset
from popdecode.tokenize.sampler import EvalWindowSampler
from popdecode.tokenize.stitch import Stitched, Stitcher
from popdecode.tokenize.tokenizer import Tokenizer
from popdecode.utils.progress import progress


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward pass (the loss stays float32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_split(
    model: torch.nn.Module,
    sessions: Sequence,
    tokenizer: Tokenizer,
    *,
    split: str,
    normalization: dict[str, tuple[np.ndarray, np.ndarray]],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    num_workers: int = 0,
    desc: str | None = None,
    causal: bool = False,
    delay: float = 0.0,
) -> dict[tuple[str, str], Stitched]:
    """Stitched predictions of every (session, readout) on ``split``, in original units.

    Every sample inside the split's intervals is returned with its eval mask (R^2 counts
    only the masked ones). Sessions with an empty split are absent from the result.
    ``causal``: every sample from the one window that ends at it (no stitching), or
    ``delay`` seconds after it.
    """
    device = torch.device(device)
    intervals = [s.split(split) for s in sessions]
    length = tokenizer.config.window_length
    if causal:
        windows = causal_windows(sessions, intervals, tokenizer.session_readouts, window_length=length, delay=delay)
    else:
        windows = EvalWindowSampler(intervals=intervals, window_length=length, step=0.5).windows
    stitcher = Stitcher(
        intervals={s.id: iv for s, iv in zip(sessions, intervals)}, normalization=normalization
    )
    if not windows:
        return {}
    dataset = WindowDataset(sessions, tokenizer, windows=windows, train=False)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
        # A private generator: building this loader must not draw from torch's global one,
        # which drives training's dropout (resumed runs must see the same stream).
        generator=torch.Generator(),
    )
    was_training = model.training
    model.eval()
    try:
        bar = progress(loader, desc=desc, leave=False) if desc else loader
        for batch in bar:
            gpu_batch = batch.to(device)
            with autocast(device, precision):
                preds = model(gpu_batch)
            stitcher.add(batch, {k: v.float().cpu() for k, v in preds.items()})
    finally:
        model.train(was_training)
    return stitcher.results(masked=False)


def score(stitched: dict[tuple[str, str], Stitched], *, method: str, split: str) -> list[ResultRow]:
    """One :class:`ResultRow` per (session, readout): R^2 over the eval-mask samples."""
    rows = []
    for (sid, readout), st in sorted(stitched.items()):
        mask = st.eval_mask
        # Targets that never vary (a resting rat) give R^2 = -inf; that is the answer, not a
        # numerical accident worth a warning on every validation.
        with np.errstate(over="ignore", divide="ignore"):
            r2 = r2_score(st.targets[mask], st.predictions[mask])
        rows.append(ResultRow(method=method, split=split, session=sid, readout=readout,
                              r2=r2, n_timestamps=int(mask.sum())))
    return rows
