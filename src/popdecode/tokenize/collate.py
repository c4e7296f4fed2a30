"""Packing windows into one batch, and unpacking it again.

Windows differ in length, so :func:`collate` concatenates their tokens instead of padding
them (see :mod:`popdecode.tokenize.batch`). The only bookkeeping is in the targets: a
window's ``targets[r].index`` points into that window's queries, and after packing it must
point into the batch's queries, i.e. shift by the number of queries of the windows before.
Since every window lists its queries readout by readout, the shifted indices of readout r
come out ascending: exactly the positions of the packed queries with ``output_readout == r``.
"""

from __future__ import annotations

import numpy as np
import torch

from popdecode.tokenize.batch import Batch, ReadoutTargets, TokenizedWindow


def collate(windows: list[TokenizedWindow]) -> Batch:
    """Pack a list of windows into a :class:`Batch` of CPU tensors."""
    if not windows:
        raise ValueError("cannot collate an empty list of windows")
    input_lengths = np.array([len(w.input_units) for w in windows], dtype=np.int64)
    output_lengths = np.array([len(w.output_times) for w in windows], dtype=np.int64)
    output_offsets = np.concatenate([[0], np.cumsum(output_lengths)[:-1]])

    names: list[str] = []
    for w in windows:
        names.extend(n for n in w.targets if n not in names)
    targets = {}
    for name in names:
        parts = [(w.targets[name], off) for w, off in zip(windows, output_offsets) if name in w.targets]
        dim = next(t.values.shape[1] for t, _ in parts)
        index = np.concatenate([np.asarray(t.index, dtype=np.int64) + off for t, off in parts])
        # Windows of different sessions may list readouts in different orders only if a
        # caller built them by hand; sorting keeps the documented "ascending" promise.
        order = np.argsort(index, kind="stable")
        targets[name] = ReadoutTargets(
            index=torch.from_numpy(index[order]),
            values=torch.from_numpy(np.concatenate([np.asarray(t.values, np.float32).reshape(-1, dim) for t, _ in parts])[order]),
            weights=torch.from_numpy(np.concatenate([np.asarray(t.weights, np.float32) for t, _ in parts])[order]),
            eval_mask=torch.from_numpy(np.concatenate([np.asarray(t.eval_mask, bool) for t, _ in parts])[order]),
        )

    return Batch(
        input_units=torch.from_numpy(np.concatenate([w.input_units for w in windows]).astype(np.int64, copy=False)),
        input_types=torch.from_numpy(np.concatenate([w.input_types for w in windows]).astype(np.int64, copy=False)),
        input_times=torch.from_numpy(np.concatenate([w.input_times for w in windows]).astype(np.float32, copy=False)),
        input_lengths=torch.from_numpy(input_lengths),
        session_index=torch.tensor([w.session_index for w in windows], dtype=torch.int64),
        output_times=torch.from_numpy(np.concatenate([w.output_times for w in windows]).astype(np.float32, copy=False)),
        output_lengths=torch.from_numpy(output_lengths),
        output_readout=torch.from_numpy(np.concatenate([w.output_readout for w in windows]).astype(np.int64, copy=False)),
        targets=targets,
        session_ids=[w.session_id for w in windows],
        window_starts=np.array([w.window_start for w in windows], dtype=np.float64),
    )


def uncollate(batch: Batch) -> list[TokenizedWindow]:
    """The windows a batch was packed from (NumPy arrays, window-local target indices).

    The inverse of :func:`collate`; used by tests and by anything that must look at one
    window of a batch (e.g. plotting a prediction).
    """
    in_bounds = np.concatenate([[0], np.cumsum(batch.input_lengths.cpu().numpy())])
    out_bounds = np.concatenate([[0], np.cumsum(batch.output_lengths.cpu().numpy())])
    readout_of = batch.output_readout.cpu().numpy()
    windows = []
    for b in range(batch.size):
        i0, i1 = in_bounds[b], in_bounds[b + 1]
        o0, o1 = out_bounds[b], out_bounds[b + 1]
        targets = {}
        for name, t in batch.targets.items():
            index = t.index.cpu().numpy()
            sel = (index >= o0) & (index < o1)
            if not sel.any():
                continue
            targets[name] = ReadoutTargets(
                index=index[sel] - o0,
                values=t.values.cpu().numpy()[sel],
                weights=t.weights.cpu().numpy()[sel],
                eval_mask=t.eval_mask.cpu().numpy()[sel],
            )
        windows.append(
            TokenizedWindow(
                session_id=batch.session_ids[b],
                session_index=int(batch.session_index[b]),
                window_start=float(batch.window_starts[b]),
                input_units=batch.input_units[i0:i1].cpu().numpy(),
                input_types=batch.input_types[i0:i1].cpu().numpy(),
                input_times=batch.input_times[i0:i1].cpu().numpy(),
                output_times=batch.output_times[o0:o1].cpu().numpy(),
                output_readout=readout_of[o0:o1],
                targets=targets,
            )
        )
    return windows
