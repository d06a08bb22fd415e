"""How a failure is told: one description of an exception, for a run's final event and the
cockpit (what failed, and where in luna_core)."""

from __future__ import annotations

import traceback


def _short_path(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    for anchor in ("luna_core", "luna_tui", "site-packages"):
        if anchor in parts:
            i = parts.index(anchor)
            return "/".join(parts[i + (1 if anchor == "site-packages" else 0):])
    return "/".join(parts[-2:])


def describe_exception(exc: BaseException) -> str:
    """'ValueError: boom at luna_core/training.py:120 in doTraining' (what failed, where)."""
    frames = traceback.extract_tb(exc.__traceback__)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not frames:
        return what
    inner = frames[-1]
    ours = next((f for f in reversed(frames) if "luna_core" in f.filename.replace("\\", "/")),
                None)
    where = f" at {_short_path(inner.filename)}:{inner.lineno} in {inner.name}"
    if ours is not None and ours is not inner:
        where = (f" at {_short_path(ours.filename)}:{ours.lineno} in {ours.name}"
                 f" (innermost {_short_path(inner.filename)}:{inner.lineno})")
    return what + where


def exception_at(exc: BaseException) -> str:
    """'ValueError: boom (at /full/path/training.py:120)': the innermost frame, as the
    training loop's "training failed" log line words it."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
