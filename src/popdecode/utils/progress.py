"""Progress bars that stay quiet where nobody watches (tests, CI logs).

``POPDECODE_PROGRESS=0`` turns them off; otherwise tqdm decides from the terminal.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("POPDECODE_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """A tqdm bar with the package's defaults (dynamic width, off when disabled)."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", not progress_enabled())
    return tqdm(iterable, **kwargs)
