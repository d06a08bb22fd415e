"""Helpers for tests that drive the real training loop in-process."""

from __future__ import annotations

import glob
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.run.sinks import ConsoleSink

# 4 series of 64x64x(20..28) voxels: 48 training samples (5 nodules), 6 validation (1 nodule)
TINY_SYNTH = dict(series=4, seed=1, size_xy=64, slices=(20, 28), negatives_per_series=12,
                  nodules_per_series=(1, 2))


class Recorder:
    """A sink that keeps every event; ``on`` hooks run in the training thread."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.hooks = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            self.events.append(event)
        for hook in self.hooks:
            hook(event)

    def of(self, cls):
        with self.lock:
            return [e for e in self.events if isinstance(e, cls)]


def run_loop(argv, app_cls=None, hooks=(), commands=None, interactive=False):
    """Run LunaTrainingApp in this thread; returns (exit code, Recorder, console text)."""
    from luna_core.training import LunaTrainingApp

    app_cls = app_cls or LunaTrainingApp
    recorder = Recorder()
    recorder.hooks.extend(hooks)
    console = io.StringIO()
    commands = commands or CommandChannel()
    app = app_cls(sys_argv=list(argv), sinks=[recorder, ConsoleSink(console)],
                  commands=commands, interactive=interactive)
    code = app.main()
    return code, recorder, console.getvalue()


def stop_at(commands: CommandChannel, epoch: int, batch_ndx: int, phase: str = "trn"):
    """A hook that asks the loop to stop after the given batch."""
    def hook(event):
        if (isinstance(event, ev.BatchDone) and event.phase == phase
                and event.epoch == epoch and event.batch_ndx == batch_ndx):
            commands.stop()
    return hook


def run_dirs(runs_dir) -> list[str]:
    return sorted(d for d in glob.glob(os.path.join(str(runs_dir), "luna", "*"))
                  if os.path.isdir(os.path.join(d, "checkpoints")))


STARTED: list[subprocess.Popen] = []   # killed after each test (tests/conftest.py)


def hold_run_lock(run_dir) -> subprocess.Popen:
    """Another process that holds ``run_dir``'s run.lock (as a live run does) until killed;
    returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from luna_core.run.runlock import RunLock\n"
        f"lock = RunLock.acquire({str(run_dir)!r}, 'abc'); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, start_new_session=True)
    STARTED.append(holder)
    assert holder.stdout.readline().strip() == "held"
    return holder


def kill_leftover_runs() -> None:
    """A test that failed before ending its run must not leave it training for ever."""
    while STARTED:
        kill_run(STARTED.pop())


def kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL to a run's whole process group (its loader workers too), if still running."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)


class HeadlessRun(subprocess.Popen):
    """A headless run whose console output goes to a file, read with ``output()``: a pipe
    that nobody reads while the test goes on fills up (64 KB) and blocks the run in a write,
    which a loaded machine (a slower test, a run further along) made happen."""

    log_path: str = ""

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def communicate(self, input=None, timeout=None):
        self.wait(timeout=timeout)
        return self.output(), None


def start_headless(train_argv, tmp_path, *extra) -> HeadlessRun:
    """`luna-tui --headless` in its own process group on the tiny set, with more epochs than
    any test waits for (a run the test does not end itself cannot finish under it)."""
    argv = train_argv("--epochs", "100000", "--num-workers", "1", *extra)
    log_path = tmp_path / f"headless-{len(STARTED)}.log"
    # A test runner started under nohup ignores SIGHUP, and a child would inherit that (the
    # run keeps an ignored SIGHUP ignored, by design): start it with the default.
    hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            proc = HeadlessRun([sys.executable, "-m", "luna_tui", "--headless", *argv],
                               stdout=log, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    finally:
        signal.signal(signal.SIGHUP, hup)
    proc.log_path = str(log_path)
    STARTED.append(proc)
    return proc


def read_run_events(tmp_path, comment="dlwpt"):
    """The records of the run with this comment under tmp_path/runs (partial lines skipped)."""
    files = glob.glob(str(tmp_path / "runs" / "luna" / f"*-{comment}" / "events.jsonl"))
    if not files:
        return []
    records = []
    for line in open(files[0]).read().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return records


def wait_for_events(tmp_path, predicate, proc, timeout=120, comment="dlwpt"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_run_events(tmp_path, comment)
        if predicate(records):
            return records
        assert proc.poll() is None, _output(proc)
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the run")


def _output(proc) -> str:
    return proc.output() if isinstance(proc, HeadlessRun) else proc.stdout.read()


def states(records) -> list[str]:
    return [r["state"] for r in records if r["kind"] == "status"]


def trn_batches(records):
    return [r for r in records if r["kind"] == "batch_done" and r["phase"] == "trn"]
