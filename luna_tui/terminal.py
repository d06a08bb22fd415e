"""The terminal and the process around the cockpit, before and after Textual owns them:
whether a cockpit can run here, the standard streams on /dev/null, the quit signals, and
multiprocessing's helper processes started early. No Textual here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable


def terminal_problem(stdin=None, stdout=None, environ=None) -> str | None:
    """Why the cockpit cannot run here, or None when it can."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    environ = os.environ if environ is None else environ

    def tty(stream) -> bool:
        try:
            return bool(stream is not None and stream.isatty())
        except (ValueError, OSError):
            return False

    if not tty(stdin) or not tty(stdout):
        return "stdin and stdout must be a terminal"
    if environ.get("TERM", "") in ("", "dumb"):
        return "TERM is dumb or unset"
    return None


Installed = list[tuple[asyncio.AbstractEventLoop, int]]


def install_quit_signals(installed: Installed, on_quit: Callable[[], None],
                         on_hangup: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call ``on_quit``, SIGHUP ``on_hangup``, on the running event loop
    (those the platform has); each one goes on ``installed``, for ``remove_signals``."""
    loop = asyncio.get_running_loop()
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, on_hangup if name == "SIGHUP" else on_quit)
            installed.append((loop, sig))
        except (NotImplementedError, RuntimeError, ValueError):
            pass


def remove_signals(installed: Installed) -> None:
    for loop, sig in installed:
        try:
            loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    installed.clear()


@contextlib.contextmanager
def stdio_to_devnull():
    """Point file descriptors 1 and 2 at /dev/null for the duration (main thread only)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def stdio_to_devnull_for_good() -> None:
    """Point file descriptors 0, 1 and 2 at /dev/null (their terminal has hung up)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)


def prepare_worker_processes() -> None:
    """Start multiprocessing's helper processes before Textual takes over the terminal.

    While a Textual app runs, ``sys.stdout``/``sys.stderr`` are capture objects whose
    ``fileno()`` is -1, and multiprocessing passes those descriptors on when it first starts
    its resource tracker or forkserver: DataLoader workers started later from the training
    thread then fail with "ValueError: bad value(s) in fds_to_keep". Starting both now avoids
    that. The forkserver (and so every DataLoader worker) gets /dev/null as stdout/stderr, so
    that a worker's stray print cannot scribble over the cockpit.
    """
    if os.name != "posix":
        return
    import multiprocessing

    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    except Exception:  # noqa: BLE001 - best effort: training may not even use workers
        pass
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    try:
        from multiprocessing import forkserver

        with stdio_to_devnull():
            forkserver.ensure_running()
    except Exception:  # noqa: BLE001
        pass
