"""Read a recording file into a checked :class:`~popdecode.data.session.Session`.

:func:`load_recording` looks at the file's content, not its name, and hands it to one of:

- :mod:`.nwb` -- NWB 2 files (pynwb);
- :mod:`.brainsets` -- session files written by brainsets / temporaldata (HDF5);
- :mod:`.npz` -- the plain NumPy layout documented there and in docs/data_formats.md.

Every importer's result goes through :func:`popdecode.data.validate.clean_session`, whose
warning lines are printed to stderr. Splits are not assigned here (see
:func:`popdecode.data.splits.assign_splits`) unless the file carries its own.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from popdecode.data.session import Session
from popdecode.data.validate import clean_session, emit_warnings
from popdecode.errors import UserError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
FORMATS_HINT = "popdecode reads NWB, brainsets/temporaldata HDF5 and .npz files (see docs/data_formats.md)"


def detect_format(path: str | Path) -> str:
    """'nwb', 'temporaldata' or 'npz' from the file's content; :class:`UserError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise UserError(f"{path} is a directory; pass the recording files inside it")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head != HDF5_MAGIC:
        raise UserError(f"{path} is not an NWB, brainsets/temporaldata HDF5 or .npz file; {FORMATS_HINT}")
    try:
        with h5py.File(path, "r") as f:
            if "neurodata_type" in f.attrs or "nwb_version" in f.attrs:
                return "nwb"
            from popdecode.data.importers.brainsets import is_temporaldata

            if is_temporaldata(f):
                return "temporaldata"
    except OSError:
        raise UserError(f"cannot read {path}: not a complete HDF5 file (corrupt or truncated); re-download or re-export it") from None
    raise UserError(f"{path} is an HDF5 file but neither NWB nor brainsets/temporaldata; {FORMATS_HINT}")


def load_recording(path: str | Path, targets: list[str] | None = None) -> Session:
    """Read one recording file, pick its target series and check it.

    ``targets`` names the series to decode; ``None`` picks ``hand_vel``, ``cursor_vel`` or
    ``position``, the first present. Raises :class:`UserError` on bad input, naming what
    is wrong and how to fix it.
    """
    kind = detect_format(path)
    if kind == "nwb":
        from popdecode.data.importers.nwb import load_nwb as load
    elif kind == "temporaldata":
        from popdecode.data.importers.brainsets import load_temporaldata as load
    else:
        from popdecode.data.importers.npz import load_npz as load
    session, notes = clean_session(load(path, targets))
    emit_warnings(notes)
    return session
