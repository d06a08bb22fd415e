"""State on disk written atomically: the CT cache, checkpoints, the demo data set.

``atomic_write(path)`` yields a file in the same folder under a temporary name (``.NAME.tmp-
XXXX-PID``); when the block ends without an error it is flushed, fsynced and renamed over
``path`` with ``os.replace`` (and the folder fsynced, so the rename itself survives a power
cut). On any error, or an exception such as KeyboardInterrupt, the temporary file is removed and
``path`` is as it was. A writer killed outright leaves its temporary file behind:
``remove_orphaned_temps`` deletes those whose process is gone.

Standard library only at import (every layer uses it); the orphan check asks
``luna_core.proc.process_alive`` (psutil) when called.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from typing import IO

TEMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, text: bool = False,
                 mode: int = 0o644) -> Iterator[IO]:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # the PID last: remove_orphaned_temps tells a live writer's file from a dead one's
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{TEMP_MARK}",
                               suffix=f"-{os.getpid()}", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; the files are not secret
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8", "newline": "\n"}
                                                      if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make renames in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_orphaned_temps(directory: str) -> list[str]:
    """Delete the temporary files of writers whose process has exited; returns their paths."""
    from luna_core.proc import process_alive

    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(directory), f".*{TEMP_MARK}*")):
        pid = tmp.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
                removed.append(tmp)
    return removed
