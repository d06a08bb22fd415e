"""Is a process still there? The one rule every reader of a run, a queue entry or a
temporary file uses (standard library and psutil only: the bottom of luna_core)."""

from __future__ import annotations


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """Is ``pid`` still the process meant? A zombie is not, and neither is a newer process
    that got the same pid (it started after ``started_at``, when given)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or proc.create_time() <= started_at + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
