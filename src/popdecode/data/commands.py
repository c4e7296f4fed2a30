"""Build a store from recording files (`prepare`) and look inside one (`inspect`).

    popdecode prepare INPUT... --out DIR [--target NAME ...] [--overwrite] [--seed N] [--split-margin S]
    popdecode inspect DIR

`prepare` reads NWB, brainsets/temporaldata HDF5 and .npz recordings (a directory INPUT
means every such file in it), picks the series to decode (--target, repeatable; default
hand_vel, else cursor_vel, else position), checks each session, assigns train/valid/test
splits (trials dealt 70/10/20, or ~60 s time blocks without trials; a split the file
carries is kept) and adds the sessions to the store DIR. It is all-or-nothing: on any
error the store is left exactly as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from popdecode.data.importers import load_recording
from popdecode.data.splits import assign_splits
from popdecode.data.store import Store, StoreWriter
from popdecode.errors import UserError
from popdecode.utils.progress import progress

RECORDING_SUFFIXES = (".nwb", ".h5", ".hdf5", ".npz")


# ------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------
def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="recording files (NWB, brainsets HDF5, .npz) or folders of them")
    parser.add_argument("--out", required=True, metavar="DIR", help="store directory (created if absent, added to if present)")
    parser.add_argument(
        "--target", action="append", metavar="NAME", default=None,
        help="behaviour series to decode; repeat for several (default: hand_vel, else cursor_vel, else position)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace sessions whose id is already in the store")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test shuffle (default 0)")
    parser.add_argument(
        "--split-margin", type=float, default=1.0, metavar="S",
        help="seconds cut from train on both sides of every valid/test trial or block (default 1, as "
        "in the paper). Use 0 for files whose trials are laid end to end with no time between them "
        "(e.g. the MYOW monkey files), where a 1 s margin removes most of the training data",
    )


def _expand(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in RECORDING_SUFFIXES and f.is_file())
            if not found:
                raise UserError(f"{p} holds no .nwb, .h5 or .npz files; pass recording files or a folder of them")
            files.extend(found)
        else:
            files.append(p)
    return files


def run_prepare(args: argparse.Namespace) -> int:
    if not args.split_margin >= 0:
        raise UserError(f"--split-margin must be 0 or more seconds, got {args.split_margin}")
    files = _expand(args.inputs)
    targets = [t for item in args.target for t in item.split(",") if t] if args.target else None
    ids = []
    with StoreWriter(args.out, overwrite=args.overwrite) as writer:
        for path in progress(files, desc="prepare", unit="file"):
            session = assign_splits(load_recording(path, targets), seed=args.seed, margin=args.split_margin)
            writer.add(session)  # its warnings were printed by load_recording
            ids.append(session.id)
    print(f"wrote {len(ids)} session(s) to {args.out}", file=sys.stderr)
    print(format_table(Store(args.out), only=ids))
    return 0


# ------------------------------------------------------------------------------------
# inspect
# ------------------------------------------------------------------------------------
def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="DIR", help="store directory written by `popdecode prepare`")


def _split_cell(entry: dict, name: str) -> str:
    size = entry["splits"][name]
    if "trials" in size:
        return f"{size['trials']} tr"
    return f"{size['seconds']:.0f} s"


def format_table(store: Store, only: list[str] | None = None) -> str:
    """A fixed-width table: one row per session with its size, series and split sizes."""
    header = ["session", "units", "duration_s", "spikes", "series (*target)", "train", "valid", "test"]
    rows = [header]
    for sid, e in store.manifest["sessions"].items():
        if only is not None and sid not in only:
            continue
        series = ", ".join(f"{n}*" if n in e["targets"] else n for n in e["series"])
        rows.append([
            sid, str(e["num_units"]), f"{e['duration']:.1f}", str(e["num_spikes"]), series,
            _split_cell(e, "train"), _split_cell(e, "valid"), _split_cell(e, "test"),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {1, 2, 3, 5, 6, 7}
    lines = [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    return "\n".join(lines)


def run_inspect(args: argparse.Namespace) -> int:
    store = Store(args.store)
    print(format_table(store))
    print(f"{len(store)} session(s)")
    return 0
