"""A queue's child dies with its runner: ``die_with_parent()`` in the child asks Linux for a
SIGTERM when the runner that started it dies (``PR_SET_PDEATHSIG``), however it dies
(``kill -9`` included). The run's SIGTERM handler then stops it at the next batch boundary
with a checkpoint (exit 143), and the next ``queue run`` resumes it; the runner's environment
names it (``LUNA_QUEUE_PARENT``: its pid), so that a child whose runner died before this call
stops at once. Elsewhere (not Linux) nothing is asked: the next runner waits on the run
folder's lock instead (luna_core.run.queue.wait_for_previous)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "LUNA_QUEUE_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """True when the kernel will tell this process of its runner's death."""
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != int(parent):       # the runner died before we asked: stop now
        os.kill(os.getpid(), signal.SIGTERM)
    return True
