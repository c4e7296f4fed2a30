"""What every importer shares: choosing the target series and naming the session."""

from __future__ import annotations

from pathlib import Path

from popdecode.errors import UserError

# Series decoded when --target is not given, first match wins: monkey hand velocity (NWB,
# NLB, brainsets' `hand`), brainsets' cursor velocity, then a tracked animal's position.
DEFAULT_TARGETS = ("hand_vel", "cursor_vel", "position")


def choose_targets(path: str | Path, available: list[str], requested: list[str] | None) -> list[str]:
    """The series to decode: ``requested`` (each must exist) or the first default present."""
    names = ", ".join(available) if available else "none"
    if requested:
        missing = [t for t in requested if t not in available]
        if missing:
            raise UserError(
                f"{path}: no series named {', '.join(missing)}; the file has: {names}; "
                "pick one of them with --target NAME"
            )
        return list(dict.fromkeys(requested))
    for name in DEFAULT_TARGETS:
        if name in available:
            return [name]
    raise UserError(
        f"{path}: none of the default targets ({', '.join(DEFAULT_TARGETS)}) is present; "
        f"the file has: {names}; pick the series to decode with --target NAME"
    )


def session_id_for(path: str | Path) -> str:
    """The session id of a file: its name without the extension (readable and distinct)."""
    return Path(path).stem


def columns_for(dim: int) -> list[str]:
    """Default column names: x, y, z for up to three columns, else 0, 1, 2, ..."""
    return ["x", "y", "z"][:dim] if dim <= 3 else [str(i) for i in range(dim)]


def as_str(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
