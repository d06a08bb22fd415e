"""A lost SSH connection: the in-process cockpit (`luna-tui` in a terminal) that gets a
hang-up must not lose work (it checkpoints and stops cleanly, and its process ends); an
attached cockpit detaches and the run goes on. Each cockpit runs in a real pseudo-terminal as
its controlling process; closing the terminal's master side is what sshd does when the link
drops (the kernel sends SIGHUP, and the terminal's reads and writes fail from then on).

Machine-independent by construction: it waits on the run's event file and on process exits,
never on a value SGD reaches."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from luna_core.train.checkpoint import load_checkpoint
from tests.trainhelpers import read_run_events, start_headless, trn_batches, wait_for_events

# make the terminal this new session's controlling terminal, then become the cockpit
TAKE_TTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
            "os.execv(sys.executable, [sys.executable, '-m', 'luna_tui', *sys.argv[1:]])")


class Terminal:
    """`luna-tui ARGS` on a pseudo-terminal of 80x24, its output drained like sshd does."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = dict(os.environ, TERM="xterm-256color")
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen([sys.executable, "-c", TAKE_TTY, *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.screen = bytearray()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen.extend(chunk)

    def wait_for_screen(self, needle: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.screen:
            assert self.proc.poll() is None, self.screen.decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, f"{needle!r} never appeared"
            time.sleep(0.1)

    def hang_up(self) -> None:
        """The SSH link drops."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_hangup_checkpoints_and_stops_the_in_process_run(train_argv, tmp_path):
    term = Terminal(*train_argv("--epochs", "50", "--max-batches", "2", "--batch-size", "4"))
    try:
        term.wait_for_screen(b"LUNA cockpit")
        deadline = time.monotonic() + 90
        while len(trn_batches(read_run_events(tmp_path))) < 1:
            assert term.proc.poll() is None, term.screen.decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the cockpit did not start training"
            time.sleep(0.1)
        term.hang_up()
        term.proc.wait(timeout=60)         # the process ends: it does not hang on the tty
        assert term.proc.returncode == 0
    finally:
        term.close()
    records = read_run_events(tmp_path)
    finished = records[-1]
    assert finished["kind"] == "run_finished" and finished["state"] == "stopped", finished
    stop = [r for r in records if r["kind"] == "checkpoint"][-1]
    assert stop["reason"] == "stop"
    assert load_checkpoint(stop["path"])["total_samples"] == stop["total_samples"] > 0


def test_hangup_of_an_attached_cockpit_detaches_and_the_run_goes_on(train_argv, tmp_path):
    run = start_headless(train_argv, tmp_path, "--max-batches", "2", "--batch-size", "4")
    term = None
    try:
        records = wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, run,
                                  timeout=90)
        term = Terminal("attach", records[0]["run_dir"])
        term.wait_for_screen(b"Detach")
        done = len(trn_batches(read_run_events(tmp_path)))
        term.hang_up()
        term.proc.wait(timeout=60)
        assert term.proc.returncode == 0
        wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= done + 2, run)
        assert run.poll() is None
        assert not any(r["kind"] == "log" and "received on the control socket" in r["message"]
                       for r in read_run_events(tmp_path))     # nothing was sent to it
    finally:
        if term is not None:
            term.close()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=60)
