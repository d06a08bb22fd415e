"""The pieces `luna-tui attach` stands on, without the UI: the control socket of a headless
run, reading a growing event file, and telling runs' states apart (`luna-tui runs`).

Machine-independent by construction: states, sockets and files only; no value SGD reaches."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile

from luna_core.run import events as ev
from luna_core.run.control_socket import ControlClient, socket_path_for
from luna_core.run.eventfile import EventFileFollower, read_events
from luna_core.run.runs import CRASHED, RUNNING, list_runs, read_run, resolve_run_dir
from luna_core.train.checkpoint import load_checkpoint
from tests.trainhelpers import start_headless, states, trn_batches, wait_for_events


def test_event_file_follower_holds_back_a_partial_line(tmp_path):
    path = tmp_path / "events.jsonl"
    first = ev.event_to_dict(ev.LogRecord(level="INFO", message="one"))
    second = json.dumps(ev.event_to_dict(ev.LogRecord(level="INFO", message="two")))
    path.write_text(json.dumps(first) + "\n" + second[:20])
    follower = EventFileFollower(str(path))
    assert [e.message for e in follower.poll()] == ["one"]
    assert follower.poll() == []
    with open(path, "a") as f:
        f.write(second[20:] + "\n" + json.dumps({"v": 1, "kind": "future_kind", "t": 0}) + "\n")
    assert [e.message for e in follower.poll()] == ["two"]
    assert [e.message for e in read_events(str(path))] == ["one", "two"]


def test_control_socket_pauses_checkpoints_and_stops_a_headless_run(train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path)
    records = wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, proc)
    started = records[0]
    sock_path = started["control_socket"]
    assert sock_path == socket_path_for(started["run_dir"])
    mode = os.stat(sock_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert os.stat(sock_path).st_uid == os.getuid()

    # clients that misbehave: garbage, a 5 MB line, one gone before its reply
    for request in (b"\xff\xfe garbage\n", b"x" * 5_000_000 + b"\n",
                    b'{"command": "no such command"}\n'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as rude:
            rude.connect(sock_path)
            try:
                rude.sendall(request)
            except OSError:
                pass    # the server may close on an over-long line before it is all sent
    first, second = ControlClient(sock_path), ControlClient(sock_path)
    assert first.pause() == {"ok": True, "command": "pause"}
    wait_for_events(tmp_path, lambda r: states(r)[-1:] == ["paused"], proc)
    assert read_run(started["run_dir"]).state == RUNNING

    assert second.checkpoint()["ok"]  # a second attacher, while paused
    records = wait_for_events(tmp_path, lambda r: any(x["kind"] == "checkpoint"
                                                      and x["reason"] == "request" for x in r),
                              proc)
    saved = next(x for x in records if x["kind"] == "checkpoint" and x["reason"] == "request")
    assert load_checkpoint(saved["path"])["total_samples"] == saved["total_samples"]
    # no batch ran while paused: the checkpoint is where the pause was
    paused = next(i for i, x in enumerate(records)
                  if x["kind"] == "status" and x["state"] == "paused")
    assert not any(x["kind"] == "batch_done" for x in records[paused:])
    last = trn_batches(records)[-1]
    assert (saved["epoch"], saved["batch_ndx"]) == (last["epoch"], last["batch_ndx"] + 1)
    assert any(x["kind"] == "log" and "received on the control socket" in x["message"]
               for x in records)
    paused_count = len(trn_batches(records))
    assert second.put("resume")["ok"]
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) > paused_count, proc)
    assert first.stop()["ok"]
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in out and "Exception in thread" not in out
    assert not os.path.exists(sock_path)  # removed at the end
    assert read_run(started["run_dir"]).state == ev.STOPPED


def test_socket_path_is_in_the_run_dir_or_a_private_folder_when_too_long(tmp_path):
    short = tmp_path / "r"
    assert socket_path_for(str(short)) == str(short / "control.sock")
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / "control.sock")) > 108        # would not fit in sun_path
    path = socket_path_for(str(deep))
    folder = os.path.dirname(path)
    assert folder == os.path.join(tempfile.gettempdir(), f"luna-tui-{os.getuid()}")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert len(path.encode()) <= 100 and path.endswith(".sock")
    assert socket_path_for(str(deep)) == path            # the same run, the same socket
    assert socket_path_for(str(deep) + "x") != path


def test_runs_lists_running_finished_and_crashed(train_argv, tmp_path):
    runs_dir = tmp_path / "runs"
    finished = subprocess.run(
        [sys.executable, "-m", "luna_tui", "--headless",
         *train_argv("--epochs", "1", "--max-batches", "2", "done")],
        capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr

    killed = start_headless(train_argv, tmp_path, "killed")
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, killed, comment="killed")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()

    running = start_headless(train_argv, tmp_path, "running")
    try:
        wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, running,
                        comment="running")
        states = {os.path.basename(r.run_dir).split("-")[-1]: r.state
                  for r in list_runs(str(runs_dir))}
        assert states == {"done": ev.FINISHED, "killed": CRASHED, "running": RUNNING}
        assert resolve_run_dir("latest", str(runs_dir)).endswith("-running")
        listing = subprocess.run([sys.executable, "-m", "luna_tui", "runs", "--runs-dir",
                                  str(runs_dir)], capture_output=True, text=True, timeout=60)
        lines = listing.stdout.splitlines()
        assert lines[0].split()[:4] == ["STATE", "EPOCH", "VAL", "LOSS"]
        assert [line.split()[0] for line in lines[1:]] == ["finished", "crashed", "running"]
        assert lines[1].split()[1] == "1/1"  # epoch of the finished run
    finally:
        os.killpg(running.pid, signal.SIGTERM)
        running.communicate(timeout=60)


def test_a_run_name_cut_to_fit_keeps_its_comment():
    from luna_core.run.listing import elide_run

    run = "runs/luna/2026-12-07_04.19.49-balanced-offset"
    assert elide_run(run, 60) == run
    assert elide_run(run, 35) == "2026-12-07_04.19.49-balanced-offset"
    assert elide_run(run, 24) == "…4.19.49-balanced-offset"       # the comment whole
    assert elide_run(run, 12) == "balan…offset"                    # both ends of it
    sweep = "runs/luna/2026-12-07_04.19.49-sweep-lr0.001-balanced2-augmented"
    assert elide_run(sweep, 24) == "sweep-lr0.0…d2-augmented"
    assert all(len(elide_run(sweep, n)) == n for n in range(2, 50))
