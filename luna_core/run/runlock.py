"""One owner per run folder: ``RUN_DIR/run.lock``.

The process that writes a run folder (rank 0 of a run, fresh or resumed) holds an exclusive
``flock`` on ``RUN_DIR/run.lock`` for its whole life. The kernel drops the lock when the
process ends, however it ends (``kill -9`` included), so a dead run never leaves one behind,
and a second writer (``--resume`` of a live run, a queue runner that would start an entry
again beside its orphaned process) is refused at once with the holder's pid and host.

The file's content is for messages only (the lock is what counts): one JSON line with the
holder's ``pid``, ``host``, ``run_id`` and ``since`` (Unix time).

Folder names are made unique here too: ``make_unique_run_dir`` creates the folder with
``os.mkdir`` (no ``exist_ok``), so two runs started in the same second with the same comment
get two folders (``TIME-COMMENT`` and ``TIME.2-COMMENT``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
import weakref

from luna_core.errors import LunaInputError

LOCK_NAME = "run.lock"
#: A lock held by another process is asked for again this often before refusing: a reader's
#: brief probe (``held_by``) must not make a writer's start fail.
ACQUIRE_TRIES, ACQUIRE_GAP = 5, 0.1

log = logging.getLogger(__name__)
_HELD: weakref.WeakSet = weakref.WeakSet()     # this process's held locks


def _close_in_child() -> None:
    """A forked child (a DataLoader worker) does not keep the run's lock alive after the run
    dies: its copy of the descriptor is closed; the parent's lock stays."""
    for held in list(_HELD):
        if held._fd is not None:
            with contextlib.suppress(OSError):
                os.close(held._fd)
            held._fd = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunInUse(LunaInputError):
    """The run folder is held by a live process."""


def lock_path(run_dir: str) -> str:
    return os.path.join(run_dir, LOCK_NAME)


def _describe(holder: dict | None) -> str:
    if not holder:
        return "a live process"
    host = holder.get("host") or "?"
    since = holder.get("since")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) \
        if isinstance(since, int | float) else ""
    return f"pid {holder.get('pid', '?')} on {host}{when}"


def _read_holder(f) -> dict | None:
    try:
        f.seek(0)
        data = json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunLock:
    """Held for the life of the run's writer; ``release()`` (or the process's end) frees it.
    The lock is on a raw descriptor, so that a forked child can drop its copy at once
    (``_close_in_child``) without a file object that would close it again later."""

    def __init__(self, run_dir: str, fd: int | None) -> None:
        self.run_dir, self._fd = run_dir, fd

    @classmethod
    def acquire(cls, run_dir: str, run_id: str = "") -> RunLock:
        """Take the run folder, or raise RunInUse naming the live holder."""
        path = lock_path(run_dir)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LunaInputError(f"cannot open the run's lock file: {exc.strerror or exc}",
                                 path) from None
        for attempt in range(ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < ACQUIRE_TRIES:
                    time.sleep(ACQUIRE_GAP)
                    continue
                os.close(fd)
                raise RunInUse(f"this run is in use by {_describe(held_by(path))}: attach "
                               f"to it ('luna-tui attach') or stop it first",
                               run_dir) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                # a file system without flock (some Lustre, FUSE, CIFS mounts): the run
                # goes on, unguarded, and says so
                log.warning("%s: this file system cannot lock files (%s): the run folder "
                            "is not guarded against a second writer", path,
                            exc.strerror or exc)
                return cls(run_dir, None)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "run_id": run_id, "since": time.time()}) + "\n"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        lock = cls(run_dir, fd)
        _HELD.add(lock)
        return lock

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)          # the last descriptor closed drops the flock
        self._fd = None


def held_by(path: str) -> dict | None:
    """Who holds the ``flock`` on the file ``path`` now: its JSON record ({} when it says
    nothing), or None when no live process holds it (or there is no such file)."""
    try:
        f = open(path, encoding="utf-8")
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(f) or {}
        except OSError:
            return None
        return None          # we got it: nobody holds it (closing the file drops ours)


def holder(run_dir: str) -> dict | None:
    """Who holds ``run_dir`` now (see ``held_by``)."""
    return held_by(lock_path(run_dir))


def in_use(run_dir: str) -> bool:
    return holder(run_dir) is not None


def describe_holder(run_dir: str) -> str:
    return _describe(holder(run_dir))


def make_unique_run_dir(parent: str, time_str: str, comment: str) -> tuple[str, str]:
    """Create ``parent/TIME-COMMENT`` (``TIME.2-COMMENT``, ``TIME.3-COMMENT`` ... when taken)
    atomically; returns (the folder, the time string it is named by)."""
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise LunaInputError(f"cannot create the runs folder: {exc.strerror or exc}",
                             parent) from None
    for n in range(1, 1000):
        stamp = time_str if n == 1 else f"{time_str}.{n}"
        run_dir = os.path.join(parent, f"{stamp}-{comment}")
        try:
            os.mkdir(run_dir)
        except FileExistsError:
            continue
        except OSError as exc:
            raise LunaInputError(f"cannot create the run folder: {exc.strerror or exc}",
                                 run_dir) from None
        return run_dir, stamp
    raise LunaInputError("999 runs of this name started in one second: pick another "
                         "comment", parent)
