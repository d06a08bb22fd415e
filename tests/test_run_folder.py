"""The run folder under attack (issue 28): one owner at a time (a live run's folder is refused
to a second writer, with its pid and host; a dead one's lock is gone), unique names made
atomically, a side output that cannot be written never costs the epoch's checkpoint, and a
partial last event line is cut before a resume appends.

Machine-independent by construction: files, exit codes and events; no timing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import types

from luna_core.run import events as ev
from luna_core.run import runlock
from luna_core.run.eventfile import read_events
from luna_core.run.sinks import drop_partial_last_line
from tests.trainhelpers import STARTED, hold_run_lock, run_dirs, run_loop


def test_runs_started_in_the_same_second_with_one_comment_get_their_own_folders(tmp_path):
    made, barrier = [], threading.Barrier(3)

    def start():
        barrier.wait()                # all three at once, with one time string
        made.append(runlock.make_unique_run_dir(str(tmp_path / "luna"),
                                                "2026-12-07_06.00.00", "same"))

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folders = sorted(d for d, _stamp in made)
    assert len(set(folders)) == 3
    assert sorted(os.listdir(tmp_path / "luna")) == [
        "2026-12-07_06.00.00-same", "2026-12-07_06.00.00.2-same", "2026-12-07_06.00.00.3-same"]
    for folder, stamp in made:            # the name's time string goes with the folder
        assert os.path.basename(folder) == f"{stamp}-same"


def test_two_real_runs_in_one_second_write_two_folders(train_argv, tmp_path, monkeypatch):
    import luna_core.training as training

    class FrozenClock(training.datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 6, 0, 0)

    monkeypatch.setattr(training, "datetime", types.SimpleNamespace(datetime=FrozenClock))
    argv = train_argv("--epochs", "1", "--max-batches", "1", "--froc-bootstrap", "0", "same")
    for _ in range(2):
        code, _rec, console = run_loop(argv)
        assert code == 0, console
    dirs = run_dirs(tmp_path / "runs")
    assert [os.path.basename(d) for d in dirs] == ["2026-12-07_06.00.00-same",
                                                   "2026-12-07_06.00.00.2-same"]
    for d in dirs:          # each folder: one run_started, its own TensorBoard folders
        starts = [e for e in read_events(os.path.join(d, "events.jsonl"))
                  if isinstance(e, ev.RunStarted)]
        assert len(starts) == 1 and starts[0].run_dir == d
    tb = sorted(n for n in os.listdir(tmp_path / "runs" / "luna") if "_cls-" in n)
    assert tb == ["2026-12-07_06.00.00-trn_cls-same", "2026-12-07_06.00.00-val_cls-same",
                  "2026-12-07_06.00.00.2-trn_cls-same", "2026-12-07_06.00.00.2-val_cls-same"]


def _one_epoch_run(train_argv, tmp_path, *extra):
    code, rec, console = run_loop(train_argv("--epochs", "1", "--max-batches", "1",
                                             "--froc-bootstrap", "0", *extra))
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    return run_dir, rec


def test_resume_of_a_live_run_is_refused_with_its_pid_and_host(train_argv, tmp_path):
    run_dir, _rec = _one_epoch_run(train_argv, tmp_path)
    before = {n: os.path.getmtime(os.path.join(run_dir, "checkpoints", n))
              for n in os.listdir(os.path.join(run_dir, "checkpoints"))}
    events_before = open(os.path.join(run_dir, "events.jsonl"), "rb").read()
    held = runlock.RunLock.acquire(run_dir, "the-live-one")     # the "live run": this process
    try:
        code, _rec, console = run_loop(train_argv("--epochs", "2", "--resume", run_dir))
    finally:
        held.release()
    assert code == 2, console
    assert f"pid {os.getpid()} on {socket.gethostname()}" in console
    assert "in use" in console and run_dir in console
    assert open(os.path.join(run_dir, "events.jsonl"), "rb").read() == events_before
    assert {n: os.path.getmtime(os.path.join(run_dir, "checkpoints", n))
            for n in os.listdir(os.path.join(run_dir, "checkpoints"))} == before
    # once the holder is gone, the same resume goes on
    code, rec, console = run_loop(train_argv("--epochs", "2", "--resume", run_dir))
    assert code == 0, console
    assert os.path.exists(os.path.join(run_dir, "checkpoints", "e002-end.pt"))


def test_a_live_run_holds_its_folder_and_a_killed_one_leaves_no_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = hold_run_lock(run_dir)
    record = runlock.holder(str(run_dir))
    assert record["pid"] == holder.pid and record["run_id"] == "abc"
    assert f"pid {holder.pid}" in runlock.describe_holder(str(run_dir))
    holder.kill()                                      # SIGKILL: no clean-up at all
    holder.wait(timeout=30)
    assert runlock.holder(str(run_dir)) is None
    runlock.RunLock.acquire(str(run_dir)).release()


def test_an_unwritable_examples_folder_costs_no_checkpoint(train_argv, tmp_path):
    def block_examples(event):
        if isinstance(event, ev.RunStarted):    # a file where the folder would go: EEXIST
            with open(os.path.join(event.run_dir, "examples"), "w") as f:
                f.write("in the way\n")

    code, rec, console = run_loop(train_argv("--epochs", "2", "--max-batches", "1",
                                             "--froc-bootstrap", "0"), hooks=[block_examples])
    assert code == 0, console
    (run_dir,) = run_dirs(tmp_path / "runs")
    for name in ("e001-end.pt", "e002-end.pt", "best.pt"):
        assert os.path.exists(os.path.join(run_dir, "checkpoints", name)), name
    errors = [e.message for e in rec.of(ev.LogRecord) if e.level == "ERROR"]
    assert len(errors) == 2 and all(m.startswith(ev.SIDE_OUTPUT_FAILED) for m in errors)
    assert "examples of E1 were not written" in errors[0]
    assert not rec.of(ev.ExamplesSaved)
    assert rec.of(ev.RunFinished)[-1].state == ev.FINISHED


def test_a_side_output_failure_is_told_to_the_notify_command(tmp_path):
    from luna_core.run.alerts import NotifySink

    told = tmp_path / "told.txt"
    sink = NotifySink(f'echo "$LUNA_EVENT|$LUNA_MESSAGE" >> {told}')
    sink(ev.LogRecord(level="ERROR", message=f"{ev.SIDE_OUTPUT_FAILED}: the examples of E1 "
                                             f"were not written (disk full)"))
    sink(ev.LogRecord(level="ERROR", message="something else"))
    sink.close()
    assert told.read_text().splitlines() == [
        "side_output_failed|side output failed: the examples of E1 were not written "
        "(disk full)"]


def test_a_resume_after_a_partial_last_event_line_reads_whole(train_argv, tmp_path):
    run_dir, _rec = _one_epoch_run(train_argv, tmp_path)
    events_path = os.path.join(run_dir, "events.jsonl")
    whole = open(events_path, "rb").read()
    partial = b'{"v": 1, "kind": "batch_done", "t": 17000'
    with open(events_path, "ab") as f:                  # killed in the middle of a line
        f.write(partial)
    code, rec, console = run_loop(train_argv("--epochs", "2", "--resume", run_dir))
    assert code == 0, console
    assert f"cut an incomplete last line ({len(partial)} bytes)" in console
    data = open(events_path, "rb").read()
    assert data.startswith(whole) and data.endswith(b"\n")
    events = read_events(events_path)                  # every line an event: no error
    assert sum(isinstance(e, ev.RunStarted) for e in events) == 2
    for line in data.splitlines():
        json.loads(line)


def test_drop_partial_last_line_keeps_whole_files_as_they_are(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    assert drop_partial_last_line(str(path)) == 0
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert drop_partial_last_line(str(path)) == 0
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    path.write_bytes(b'{"a": 1}\n{"b"')
    assert drop_partial_last_line(str(path)) == 4
    assert path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b'no newline at all' * 10000)      # longer than one read-back block
    assert drop_partial_last_line(str(path)) == 170000
    assert path.read_bytes() == b""
    assert drop_partial_last_line(str(tmp_path / "missing")) == 0


def test_resume_of_a_live_run_before_its_first_checkpoint_names_the_holder(train_argv,
                                                                          tmp_path):
    run_dir = tmp_path / "runs" / "luna" / "2026-12-07_06.00.00-young"
    (run_dir / "checkpoints").mkdir(parents=True)         # started, no checkpoint yet
    held = runlock.RunLock.acquire(str(run_dir))
    try:
        code, _rec, console = run_loop(train_argv("--resume", str(run_dir)))
    finally:
        held.release()
    assert code == 2, console
    assert f"pid {os.getpid()}" in console and "no checkpoints" not in console


def test_a_forked_child_does_not_keep_a_dead_runs_lock(tmp_path):
    """A DataLoader worker (forked) outliving its killed trainer must not hold the folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time; from luna_core.run.runlock import RunLock\n"
        f"lock = RunLock.acquire({str(run_dir)!r}, 'abc')\n"
        "child = os.fork()\n"
        "if child == 0:\n    time.sleep(600); os._exit(0)\n"
        "print(child, flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    STARTED.append(parent)
    child = int(parent.stdout.readline())
    assert runlock.holder(str(run_dir))["pid"] == parent.pid
    parent.kill()                                 # the trainer dies; its "worker" lives on
    parent.wait(timeout=30)
    try:
        assert os.path.exists(f"/proc/{child}") or sys.platform != "linux"
        # the child drops its copy in its at-fork handler, which a loaded machine may run
        # only after the parent was killed: wait for that, not for a time (a child that kept
        # the lock would hold it until the deadline)
        deadline = time.monotonic() + 30
        while runlock.holder(str(run_dir)) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runlock.holder(str(run_dir)) is None
    finally:
        os.kill(child, 9)


def test_a_file_system_without_flock_runs_unguarded_and_says_so(tmp_path, monkeypatch,
                                                                 caplog):
    import errno
    import fcntl

    def no_locks(_fd, _op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = runlock.RunLock.acquire(str(tmp_path))
    assert lock._fd is None
    assert "cannot lock files" in caplog.text and "No locks available" in caplog.text
    lock.release()


def test_a_checkpoint_copied_away_from_its_deleted_run_resumes(train_argv, tmp_path):
    import shutil

    run_dir, _rec = _one_epoch_run(train_argv, tmp_path)
    kept = tmp_path / "models" / "kept.pt"
    kept.parent.mkdir()
    shutil.copy(os.path.join(run_dir, "checkpoints", "e001-end.pt"), kept)
    shutil.rmtree(run_dir)
    code, _rec, console = run_loop(train_argv("--epochs", "2", "--resume", str(kept)))
    assert code == 0, console
    assert os.path.exists(os.path.join(run_dir, "checkpoints", "e002-end.pt"))


def test_a_resume_does_not_check_the_default_runs_dir(tmp_path, monkeypatch):
    import pytest

    from luna_core.train.options import parse_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("a file where the default runs folder would be")
    parse_options(["--resume", "/elsewhere/run"])     # its own folder, not ./runs
    with pytest.raises(SystemExit):
        parse_options(["--resume", "/elsewhere/run", "--runs-dir", "runs"])
    with pytest.raises(SystemExit):
        parse_options([])
