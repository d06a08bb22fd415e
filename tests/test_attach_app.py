"""`luna-tui attach`: the cockpit on a headless run in another process, driven through Pilot.

The live tests start real `luna-tui --headless` subprocesses on the tiny synthetic set and
check the run's event file for what the keys did; the quick ones use event files written from
the fake trainer.

Machine-independent by construction: no assertion reads a loss or metric value; the live
tests pace the run through its control socket and wait on its event file (deadlines are
failure guards, generous for a loaded 2-core machine)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from luna_core.run import events as ev
from luna_core.run.control_socket import ControlClient
from luna_core.run.runs import CRASHED, process_alive
from luna_core.train.checkpoint import load_checkpoint
from luna_tui import cli
from luna_tui.app import CockpitApp
from luna_tui.attach import build_attach_app, farewell, open_run
from luna_tui.link.system_probe import RunProcessProbe, SystemProbe
from luna_tui.screens.confirm import AttachQuit
from luna_tui.screens.help import HelpScreen
from luna_tui.widgets.progress import ProgressPane
from luna_tui.widgets.system import render_system
from tests.cockpit_helpers import (
    FROZEN_READING,
    NO_GPU_READING,
    fake_time,
    frozen_clock,
    on_screen,
    screen_text,
    wait_for,
)
from tests.fakerun import FakeTrainer
from tests.trainhelpers import (
    kill_run,
    read_run_events,
    start_headless,
    states,
    trn_batches,
    wait_for_events,
)

WIDE = (160, 48)
# each training phase cut to 2 batches of 4: an epoch takes a few seconds on a CPU
FAST = ("--max-batches", "2", "--batch-size", "4")


# -- helpers -------------------------------------------------------------------------------

def in_toasts(needle: str, text: str) -> bool:
    """Is ``needle`` in the notifications on the screen? (They wrap long lines anywhere, so
    whitespace is left out of the comparison.)"""
    box = "".join(chr(c) for c in range(0x2500, 0x2580))     # a pane's border under it
    toasts = "".join(line.rsplit("▌", 1)[1].rstrip(" " + box)
                     for line in text.splitlines() if "▌" in line)
    return re.sub(r"\s", "", needle) in re.sub(r"\s", "", toasts)


async def toasted(pilot, app, *needles: str, timeout: float = 60.0) -> None:
    text = ""

    def shown() -> bool:
        nonlocal text
        text = screen_text(app)
        return all(in_toasts(n, text) for n in needles)

    try:
        await wait_for(pilot, shown, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{needles} not notified:\n{text}") from None


def progress_text(app) -> str:
    """The progress pane's text, unwrapped."""
    return app.query_one(ProgressPane).content.plain


async def exited(app, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while app.is_running and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not app.is_running, "the app did not exit"


def attach(run_dir, **kwargs) -> CockpitApp:
    kwargs.setdefault("clock", frozen_clock())
    return build_attach_app(run_dir, poll_interval=0.1, **kwargs)


def write_fake_run(run_dir, *, until=None, time_fn=None, **run_fields) -> list[ev.Event]:
    """An event file as a headless run writes it, from the fake trainer (2 short epochs);
    ``run_fields`` replace fields of its run_started (host, pid, control_socket)."""
    os.makedirs(run_dir, exist_ok=True)
    trainer = FakeTrainer(epochs=2, trn_batches=60, val_batches=12,
                          time_fn=time_fn or fake_time(),
                          run_dir="runs/luna/2025-03-04_12.00.00-dlwpt")
    written = []
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        for event in trainer.events():
            if isinstance(event, ev.RunStarted):
                event = dataclasses.replace(event, **run_fields)
            f.write(json.dumps(ev.event_to_dict(event)) + "\n")
            written.append(event)
            if until is not None and until(event):
                break
    return written


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- a live headless run -------------------------------------------------------------------

def last_epoch(records, phase: str) -> int:
    return max(r["epoch"] for r in records if r["kind"] == "epoch_metrics"
               and r["phase"] == phase)


def pause_run(tmp_path, proc, sock_path, pauses: int = 1) -> list[dict]:
    """Pause the run through its control socket; returns the records once it is paused."""
    assert ControlClient(sock_path).pause()["ok"]
    return wait_for_events(tmp_path, lambda r: states(r).count("paused") >= pauses
                           and states(r)[-1] == "paused", proc)


def batches_since_last_pause(records) -> list[dict]:
    last_pause = max(i for i, r in enumerate(records)
                     if r["kind"] == "status" and r["state"] == "paused")
    return [r for r in records[last_pause:] if r["kind"] == "batch_done"]


async def test_attach_shows_history_then_resumes_pauses_checkpoints_detaches_and_stops(
        train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path, *FAST)
    try:
        # The run's pace is the test's: once an epoch is done it is paused through the
        # control socket, so the history the cockpit must show is fixed before it attaches.
        records = wait_for_events(
            tmp_path, lambda r: any(x["kind"] == "epoch_metrics" and x["phase"] == "val"
                                    for x in r), proc, timeout=90)
        run_dir = records[0]["run_dir"]
        sock_path = records[0]["control_socket"]
        records = pause_run(tmp_path, proc, sock_path)
        trn_epoch, val_epoch = last_epoch(records, "trn"), last_epoch(records, "val")
        app = attach(run_dir)                      # the real probe: this machine's view
        async with app.run_test(size=WIDE, notifications=True) as pilot:
            # history at once: the per-class table and the trends hold the epochs done
            assert app.source.snapshot().metrics["val"].epoch == val_epoch
            text = await on_screen(pilot, app, f"trn E{trn_epoch}", f"val E{val_epoch}",
                                   "PAUSED", "p Resume")
            assert re.search(rf"trn E{trn_epoch}\s+all", text)
            assert re.search(rf"val E{val_epoch}\s+all", text)
            assert "no epoch finished yet" not in text
            assert "LUNA cockpit (attached) · …" in text and os.path.basename(run_dir) in text
            # the system pane watches the run's process, not this one
            await on_screen(pilot, app, f"pid {proc.pid}", "RSS")

            # c while paused: a checkpoint event in the file, a notification naming the
            # file, and no batch ran since the pause
            await pilot.press("c")
            records = wait_for_events(tmp_path, lambda r: any(
                x["kind"] == "checkpoint" and x["reason"] == "request" for x in r), proc)
            path = next(x["path"] for x in records
                        if x["kind"] == "checkpoint" and x["reason"] == "request")
            assert load_checkpoint(path)["total_samples"] > 0
            assert batches_since_last_pause(records) == []
            # the toast names it from the run directory on
            assert path.startswith(run_dir + "/checkpoints/")
            await toasted(pilot, app, "Checkpoint saved (request)",
                          os.path.relpath(path, run_dir))

            # p resumes the run: batches again, and the log says whose command it was
            batches = len(trn_batches(records))
            await pilot.press("p")
            wait_for_events(tmp_path, lambda r: len(trn_batches(r)) > batches, proc)
            await on_screen(pilot, app, "p Pause")
            await wait_for(pilot, lambda: any(
                "command 'resume' received on the control socket" in line.message
                for line in app.source.snapshot().log))

            # p pauses it again: nothing runs until a second attacher resumes it
            await pilot.press("p")
            records = wait_for_events(tmp_path, lambda r: states(r).count("paused") == 2
                                      and states(r)[-1] == "paused", proc)
            await on_screen(pilot, app, "PAUSED", "p Resume")
            assert batches_since_last_pause(records) == []
            batches = len(trn_batches(records))
            assert ControlClient(sock_path).resume()["ok"]
            await wait_for(pilot, lambda: app.snap.state in (ev.TRAINING, ev.VALIDATING))
            await on_screen(pilot, app, "p Pause")

            # d detaches at once; the run goes on
            await pilot.press("d")
            await exited(app)
        assert app.leaving.outcome == "detached" and app.return_code == 0
        assert farewell(app).startswith(f"detached; the run goes on (pid {proc.pid})")
        wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= batches + 2, proc)
        assert proc.poll() is None

        # attach again: the same state. Paused first, so the history is fixed (a run of
        # 2-batch epochs saves a checkpoint every few tenths of a second, and the cockpit
        # keeps the last 50 of them: the request one may be older than that, under load)
        records = pause_run(tmp_path, proc, sock_path, pauses=3)
        saved = [x["path"] for x in records if x["kind"] == "checkpoint"]
        assert path in saved
        app = attach(run_dir, system_probe=lambda: FROZEN_READING)
        async with app.run_test(size=(80, 24)) as pilot:
            snap = app.source.snapshot()
            assert snap.checkpoint_total == len(saved)          # every one, the request's too
            assert snap.last_checkpoint.path == saved[-1]
            # q -> "stop the run" (a paused run stops too)
            await on_screen(pilot, app, "q Quit")
            await pilot.press("q")
            assert isinstance(app.screen, AttachQuit)
            text = screen_text(app)
            assert "detach — the run goes on (default)" in text and "stop the run" in text
            await pilot.press("s")
            await exited(app, timeout=60)
        assert app.leaving.outcome == "stopped"
        proc.communicate(timeout=60)
        assert proc.returncode == 0
        records = read_run_events(tmp_path)
        assert records[-1]["kind"] == "run_finished" and records[-1]["state"] == "stopped"
        stop = [r for r in records if r["kind"] == "checkpoint"][-1]
        assert stop["reason"] == "stop" and load_checkpoint(stop["path"])
        assert farewell(app) == f"run stopped; last checkpoint {stop['path']}"
    finally:
        kill_run(proc)


async def test_attached_cockpit_follows_the_run_to_its_end(train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path, *FAST, "--epochs", "1")
    try:
        # paused as soon as its control socket is up: it cannot end before the attach
        records = wait_for_events(tmp_path, lambda r: len(r) > 0, proc, timeout=90)
        pause_run(tmp_path, proc, records[0]["control_socket"])
        app = attach(records[0]["run_dir"], system_probe=lambda: FROZEN_READING)
        assert not app.source.snapshot().ended
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await on_screen(pilot, app, "PAUSED", "p Resume")
            await pilot.press("p")                  # resumes: the run goes to its end
            await on_screen(pilot, app, "FINISHED", "run finished", timeout=60)
            await toasted(pilot, app, "Run finished")
            assert "p Pause" not in screen_text(app)
            await pilot.press("p")                  # read-only now: says why
            await toasted(pilot, app, "Cannot pause or resume: the run has finished")
            await pilot.press("q")                  # nothing to stop: no question
            await exited(app)
        assert app.leaving.outcome == "closed"
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        kill_run(proc)


async def test_killed_run_is_shown_as_ended_unexpectedly_with_how_to_resume(
        train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path, *FAST)
    try:
        records = wait_for_events(tmp_path, lambda r: any(x["kind"] == "checkpoint"
                                                          for x in r), proc, timeout=90)
        run_dir = records[0]["run_dir"]
        app = attach(run_dir, system_probe=lambda: FROZEN_READING)
        async with app.run_test(size=WIDE, notifications=True) as pilot:
            await on_screen(pilot, app, "p Pause")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # the run may have written more checkpoints since: the last one is the one to show
            records = read_run_events(tmp_path)
            checkpoint = os.path.basename(
                [x for x in records if x["kind"] == "checkpoint"][-1]["path"])
            await toasted(pilot, app, "Run ended unexpectedly",
                          f"Resume with: luna-tui --headless --resume {run_dir}")
            text = await on_screen(pilot, app, "ENDED UNEXPECTEDLY", checkpoint, "resume:")
            assert f"resume: luna-tui --headless --resume {run_dir}" in progress_text(app)
            assert f"process {proc.pid}" in text
            assert "p Pause" not in text
            await pilot.press("q")
            await exited(app)
    finally:
        kill_run(proc)
    # attaching afterwards: the same, at once
    app = attach(run_dir, system_probe=lambda: FROZEN_READING)
    assert app.source.snapshot().state == CRASHED
    async with app.run_test(size=(80, 24)) as pilot:
        text = await on_screen(pilot, app, "ENDED UNEXPECTEDLY", "resume: luna-tui")
        assert f"resume: luna-tui --headless --resume {run_dir}" in progress_text(app)
        await pilot.press("d")
        await exited(app)
    assert farewell(app).endswith(f"resume with: luna-tui --headless --resume {run_dir}")


# -- quick ones, from written event files --------------------------------------------------

async def test_a_read_only_attach_refuses_every_steering_key(tmp_path):
    """p, c, [ and ] on a run that cannot be steered from here say why; nothing is sent and
    no confirmation opens (the learning-rate keys included)."""
    from luna_tui.screens.confirm import ConfirmSetting

    # mid-run, on another host: running, but its control socket is out of reach
    write_fake_run(tmp_path / "run", until=lambda e: isinstance(e, ev.BatchDone)
                   and e.batch_ndx == 5, host="elsewhere")
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await on_screen(pilot, app, "TRAINING")
        assert app.snap.lr is not None        # the lr keys would have something to change
        for key, what in (("left_square_bracket", "change the learning rate"),
                          ("right_square_bracket", "change the learning rate"),
                          ("p", "pause or resume"), ("c", "checkpoint")):
            app.clear_notifications()
            await pilot.press(key)
            await toasted(pilot, app, f"Cannot {what}: the run is on host elsewhere")
            assert not isinstance(app.screen, ConfirmSetting)
        await pilot.press("d")
        await exited(app)
    assert app.commands.sent == []


async def test_finished_run_opens_read_only_with_its_final_state(tmp_path):
    write_fake_run(tmp_path / "run")
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        text = await on_screen(pilot, app, "FINISHED", "run finished", "trn E2", "val E2",
                               "q Quit", "d Detach")
        assert "p Pause" not in text and "c Checkpoint" not in text
        await pilot.press("c")
        await toasted(pilot, app, "Cannot checkpoint: the run has finished")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await on_screen(pilot, app, "detach now: the run goes on")
        await pilot.press("escape")
        await pilot.press("q")
        await exited(app)
    assert app.leaving.outcome == "closed"
    assert farewell(app) == ("run finished; last checkpoint "
                             "runs/luna/2025-03-04_12.00.00-dlwpt/checkpoint-e002-b00060.pt")


async def test_attach_shows_the_diagnostics_of_a_finished_run_from_its_event_file(tmp_path):
    write_fake_run(tmp_path / "run")
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=WIDE) as pilot:
        await on_screen(pilot, app, "FINISHED")
        await pilot.press("5")
        cpm = app.source.snapshot().metrics["val"].get("froc/cpm")
        await on_screen(pilot, app, f"FROC val E2 · CPM {cpm:.3f}", "· E1 ",
                        "PR curve val E2", "predictions val E2", "predicted nodule",
                        "val E2: AUC 0.80 [0.62–0.93]: better than chance",
                        "nodules scored below 0.1")


async def test_a_reading_that_needs_more_lines_gets_them_on_a_finished_run(tmp_path):
    # A finished run brings no events that would lay the screen out again: a GPU that shows
    # up after the first layout (the first reading came late, or had none) must still get
    # its lines in the System pane.
    write_fake_run(tmp_path / "run")
    readings = iter([NO_GPU_READING])
    app = attach(str(tmp_path / "run"), system_probe=lambda: next(readings, FROZEN_READING))
    async with app.run_test(size=WIDE) as pilot:
        await on_screen(pilot, app, "FINISHED", "GPU0 NVIDIA H100 80GB HBM3",
                        "97 % util · 31.2/79.6 GiB · 63 °C · 312/700 W")


def test_attached_finished_run_snapshot(snap_compare, tmp_path):
    write_fake_run(tmp_path / "run")
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)

    async def settled(pilot) -> None:
        # the first fill comes after the first refresh (poll and system reading): on a loaded
        # machine the screenshot must not be taken before it (CI caught one so)
        await on_screen(pilot, app, "go on with:", "GPU0", "FINISHED", "CPM 0.450")
        await pilot.pause()

    assert snap_compare(app, terminal_size=WIDE, run_before=settled)


async def test_a_run_that_does_not_answer_becomes_a_notification(tmp_path):
    stale = tmp_path / "run" / "control.sock"           # left behind: nobody listens
    os.makedirs(stale.parent)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    write_fake_run(tmp_path / "run", until=lambda e: isinstance(e, ev.BatchDone)
                   and e.batch_ndx == 20, time_fn=time.time, pid=os.getpid(),
                   host=socket.gethostname(), control_socket=str(stale))
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await on_screen(pilot, app, "TRAINING", "p Pause")
        await pilot.press("p")
        await toasted(pilot, app, "The run does not answer", "'pause' did not reach the run")
        assert app.is_running and app.controls.request is None
        assert app.commands.sent == [("pause", False)]
        await pilot.press("ctrl+c")                    # detaches (nothing is stopped)
        await exited(app)
    assert app.leaving.outcome == "detached"


async def test_a_run_on_another_host_is_read_only_and_not_probed(tmp_path):
    write_fake_run(tmp_path / "run", until=lambda e: isinstance(e, ev.BatchDone)
                   and e.batch_ndx == 20, host="gpu-node-7", pid=1,
                   control_socket=str(tmp_path / "run" / "control.sock"))
    app = attach(str(tmp_path / "run"))             # the real run-process probe
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        text = await on_screen(pilot, app, "TRAINING", "read-only: the run is on host "
                               "gpu-node-7", "System readings not available")
        assert "p Pause" not in text
        await pilot.press("p")
        await toasted(pilot, app, "Cannot pause or resume: the run is on host gpu-node-7")
        await pilot.press("q")                       # nothing it could stop: leaves
        await exited(app)
    assert app.source.snapshot().state == ev.TRAINING   # can't see that host: trust the file


def test_a_dead_process_without_a_final_event_is_crashed_at_once(tmp_path):
    write_fake_run(tmp_path / "run", until=lambda e: isinstance(e, ev.CheckpointSaved),
                   time_fn=time.time, pid=dead_pid(), host=socket.gethostname())
    source = open_run(str(tmp_path / "run"))
    snap = source.snapshot()
    assert snap.state == CRASHED and snap.ended and source.crashed
    assert "is gone without a final event" in snap.state_detail
    assert snap.finished.last_checkpoint == snap.last_checkpoint.path
    # a resume appends a new run_started: the run is live again
    with open(tmp_path / "run" / "events.jsonl", "a") as f:
        started = ev.RunStarted(run_dir="r", options={}, epochs=2, start_epoch=1,
                                trn_samples=1, val_samples=1, trn_pos=1, val_pos=1,
                                device="cpu", pid=os.getpid(), host=socket.gethostname())
        f.write(json.dumps(ev.event_to_dict(started)) + "\n")
    source.catch_up()
    assert source.snapshot().state == ev.STARTING and not source.snapshot().ended
    assert not process_alive(dead_pid()) and process_alive(os.getpid())


def test_the_probe_watches_the_runs_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    target = {"pid": child.pid, "host": socket.gethostname()}
    probe = RunProcessProbe(lambda: (target["pid"], target["host"]),
                            probe=SystemProbe(gpu=False))
    try:
        reading = probe()
        assert reading.proc_pid == child.pid and reading.proc_rss > 0
        assert reading.ram_total and reading.proc_note is None
        assert f"pid {child.pid} " in render_system(reading, 80).plain
        child.kill()
        child.wait()
        reading = probe()
        assert reading.proc_note == f"process {child.pid} has exited"
        assert reading.ram_total                     # the machine is still read
        target["host"] = "elsewhere"
        reading = probe()
        assert "the run is on host elsewhere" in render_system(reading).plain
    finally:
        child.kill()
        child.wait()
        probe.close()


# -- the command line ----------------------------------------------------------------------

def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli.main(["attach", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a luna-tui run" in err[0] and str(tmp_path) in err[0]

    (tmp_path / "events.jsonl").write_text('{"v": 1, "kind": "log", "t": 0, '
                                           '"level": "INFO", "message": "x"}\n')
    assert cli.main(["attach", str(tmp_path)]) == 2
    assert "no run_started event" in capsys.readouterr().err

    assert cli.main(["attach", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err

    assert cli.main(["attach", "--runs-dir", str(tmp_path / "empty")]) == 2   # latest
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs here" in err[0]


def test_attach_refuses_without_a_terminal(tmp_path, capsys, monkeypatch):
    write_fake_run(tmp_path / "runs" / "luna" / "2025-03-04_12.00.00-dlwpt")
    monkeypatch.setenv("TERM", "dumb")
    assert cli.main(["attach", "--runs-dir", str(tmp_path / "runs")]) == 2   # latest
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs an interactive terminal" in err[0]


def test_attach_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["attach", "--help"])
    assert exc.value.code == 0
    assert "RUN_DIR|latest" in capsys.readouterr().out
