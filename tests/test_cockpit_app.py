"""The cockpit app driven through Textual's Pilot, with a fake training loop in a thread.

Machine-independent by construction: the fake trainer sends set metrics; waits are on the
screen or the snapshot with generous deadlines."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
import threading
import time
import types

import pytest

from luna_core.run.command_table import CommandChannel
from luna_core.run.events import FAILED, PAUSED, STOPPED, BatchDone, RunFinished
from luna_core.run.failure import describe_exception
from luna_tui import terminal as app_module
from luna_tui.app import CockpitApp
from luna_tui.launch import build_cockpit, run_cockpit
from luna_tui.link.local import LocalLink
from luna_tui.model.collector import EventCollector
from luna_tui.screens.confirm import ConfirmQuit
from luna_tui.screens.help import HelpScreen
from luna_tui.widgets.trends import TrendPlot
from tests.cockpit_helpers import (
    FROZEN_READING,
    NO_GPU_READING,
    frozen_clock,
    on_screen,
    position,
    screen_text,
    scripted_run,
    wait_for,
)
from tests.fakerun import FakeTrainer

SIZES = [(80, 24), (160, 48)]


class RecordingChannel(CommandChannel):
    """A real command channel that also remembers what the cockpit asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def put(self, command) -> None:
        self.sent.append(getattr(command, "value", command))
        super().put(command)


def live_app(*, reading=FROZEN_READING, **trainer_kwargs):
    """A cockpit over a FakeTrainer that runs in the app's thread worker."""
    collector, channel = EventCollector(), RecordingChannel()
    trainer_kwargs = {"epochs": 4, "trn_batches": 400, "val_batches": 60,
                      "batch_delay": 0.002, **trainer_kwargs}
    trainer = FakeTrainer(sinks=[collector], commands=channel, **trainer_kwargs)
    app = CockpitApp(LocalLink(collector, channel, runner=trainer.main), clock=frozen_clock(),
                     system_probe=lambda: reading, poll_interval=0.05)
    return app, collector, channel


class Gate:
    """Paces a FakeTrainer: it runs one batch per ``release`` (and gives up after 60 s, so a
    failing test cannot leave its thread blocked for ever)."""

    def __init__(self) -> None:
        self._semaphore = threading.Semaphore(0)

    def __call__(self) -> None:
        self._semaphore.acquire(timeout=60)

    def release(self, batches: int = 1) -> None:
        for _ in range(batches):
            self._semaphore.release()


def mid_epoch_two():
    return scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 2
                        and e.phase == "trn" and e.batch_ndx == 80,
                        epochs=3, trn_batches=200, val_batches=40)


async def exited(pilot, app, timeout: float = 60.0) -> None:
    """Wait for the app to exit (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while app.is_running and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not app.is_running, "the app did not exit"


# -- what the panes show -------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_panes_show_the_values_sent(size):
    collector = mid_epoch_two()
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=size) as pilot:
        text = await on_screen(pilot, app, "? Help", "NODULES MISSED", "samples/s")
        lines = text.splitlines()
        assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines)
        # progress: state, epoch e/N, phase, batch i/n, speed, ETAs as clock time + duration
        assert "TRAINING" in text
        assert "epoch 2/3 · trn batch 81/200" in text
        assert re.search(r"[\d,]+ samples/s", text)
        assert re.search(r"training ends ≈?12:\d\d \(\d+s left\)", text)
        assert re.search(r"run ends ≈?12:\d\d \(\d+s left\)", text)
        # per-class table with the book's lopsided numbers, and the alarm
        assert "NODULES MISSED" in text
        assert "val E1: 0.0 % of nodules right (0 of 4), all 99.7 %" in text
        assert re.search(r"trn E1\s+all\s+0\.0185\s+99\.7 %\s+6,381 of 6,400", text)
        assert re.search(r"pos\s+5\.0000\s+0\.0 %\s+0 of 19\s+—\s+0\.000\s+—", text)
        assert "F1" in text and "recall" in text
        if size == (80, 24):
            # what does not fit has its own view; a one-line status says where the run is
            for key, needle in (("4", "GPU0"), ("2", "(EMA 0.9)"),
                                ("3", "E1 val")):
                await pilot.press(key)
                shown = await on_screen(pilot, app, needle)
                assert "TRAINING E2/3 trn 81/200" in shown.splitlines()[0]
                text += shown
            await pilot.press("1")
        assert "GPU0 NVIDIA H100 80GB HBM3" in text
        assert "97 % util · 31.2/79.6 GiB · 63 °C · 312/700 W" in text
        assert "RAM  48.2 of 125.7 GiB (38 %)" in text
        assert "loader-bound" in text and "data  7" in text
        assert "E1 trn  0.0185 loss,  99.7% correct" in text
        assert "(EMA 0.9)" in text          # the batch-loss plot's title, its smoothing


async def test_no_gpu_is_said_plainly():
    app = CockpitApp(LocalLink(mid_epoch_two(), CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: NO_GPU_READING)
    async with app.run_test(size=(160, 48)) as pilot:
        text = await on_screen(pilot, app, "no GPU", "RAM")
        assert re.search(r"GPU\s+no GPU", text)
        assert "util" not in text


async def test_waiting_screen_before_any_event():
    app = CockpitApp(LocalLink(EventCollector(), CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await on_screen(pilot, app, "STARTING", "waiting for the first batch")
        assert "no epoch finished yet" in text


# -- keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_p_pauses_and_progress_stops_then_p_resumes(size):
    app, collector, channel = live_app()
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().batches_done > 5)
        await on_screen(pilot, app, "p Pause", "TRAINING")
        await pilot.press("p")
        assert channel.sent == ["pause"]
        await wait_for(pilot, lambda: collector.snapshot().state == PAUSED)
        frozen = position(collector.snapshot())
        text = await on_screen(pilot, app, "PAUSED", "0 samples/s", "p Resume",
                               f"batch {frozen[2]}/400")
        # the toast says where, not the state again (the progress pane says PAUSED)
        await wait_for(pilot, lambda: any(head == "Paused" for _t, (_m, head, _s)
                                          in app.notifier.toasts))
        (said,) = [m for _t, (m, head, _s) in app.notifier.toasts if head == "Paused"]
        assert said == f"at E{frozen[0]}/4 trn {frozen[2]}/400 · p resumes"
        top = text.splitlines()[:8]                  # the progress pane does not move
        await pilot.pause(0.1)
        assert screen_text(app).splitlines()[:8] == top
        # the loop really waits: a checkpoint taken while paused is at the pause position
        await pilot.press("c")
        await wait_for(pilot, lambda: collector.snapshot().checkpoint_total == 1)
        saved = collector.snapshot().last_checkpoint
        assert (saved.reason, saved.epoch, saved.batch_ndx) == ("request", frozen[0],
                                                                frozen[2])
        assert position(collector.snapshot()) == frozen
        await pilot.press("p")
        assert channel.sent == ["pause", "checkpoint", "resume"]
        await wait_for(pilot, lambda: position(collector.snapshot()) > frozen)
        await wait_for(pilot, lambda: "PAUSED" not in screen_text(app))
        await pilot.press("ctrl+c")
        await exited(pilot, app)


async def test_c_issues_a_checkpoint_and_notifies_the_file():
    app, collector, channel = live_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().batches_done > 3)
        await pilot.press("c")
        assert channel.sent == ["checkpoint"]
        await wait_for(pilot, lambda: any(ck.reason == "request"
                                          for ck in collector.snapshot().checkpoints))
        path = next(ck.path for ck in collector.snapshot().checkpoints
                    if ck.reason == "request")
        text = await on_screen(pilot, app, "Checkpoint saved (request)")
        assert path.split("/")[-1] in text
        await pilot.press("ctrl+c")
        await exited(pilot, app)


@pytest.mark.parametrize("confirm", ["y", "enter"])
async def test_q_then_confirm_stops_at_the_next_batch_boundary_checkpoints_and_exits(confirm):
    gate = Gate()
    app, collector, channel = live_app(gate=gate)
    async with app.run_test(size=(80, 24)) as pilot:
        gate.release(5)
        await wait_for(pilot, lambda: collector.snapshot().batches_done == 5)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuit)
        assert "Quit the cockpit?" in screen_text(app)
        assert channel.sent == []                    # nothing happens before confirming
        await pilot.press(confirm)
        assert channel.sent == ["stop"]
        # the loop is inside its batch: the cockpit waits for it, and says so
        await on_screen(pilot, app, "stopping")
        assert app.is_running and collector.snapshot().finished is None
        gate.release()                               # the loop reaches its next boundary
        await exited(pilot, app)
        assert not app.is_running
    assert app.return_code == 0
    snap = collector.snapshot()
    assert snap.state == STOPPED
    stop = snap.last_checkpoint
    assert (stop.reason, stop.epoch, stop.batch_ndx) == ("stop", 1, 5)
    assert snap.batches_done == 5                    # no batch ran after the stop
    assert not app.trainer_running


async def test_q_then_n_keeps_training():
    app, collector, channel = live_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().batches_done > 3)
        await pilot.press("q")
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmQuit)
        before = position(collector.snapshot())
        # training goes on (positions, not batches_done: that restarts each phase)
        await wait_for(pilot, lambda: position(collector.snapshot()) > before)
        assert channel.sent == []
        await pilot.press("ctrl+c")
        await exited(pilot, app)


async def test_ctrl_c_is_a_confirmed_quit_even_from_a_dialog():
    app, collector, channel = live_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().batches_done > 3)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+c")
        await exited(pilot, app)
    assert app.return_code == 0
    assert channel.sent == ["stop"]
    assert collector.snapshot().state == STOPPED
    assert not app.trainer_running


async def test_help_screen_lists_the_keys_and_closes():
    app = CockpitApp(LocalLink(mid_epoch_two(), CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        text = await on_screen(pilot, app, "Keys")
        for key in ("p ", "c ", "[ ]", "1 2 3 4 5 6"):
            assert key in text
        box = app.screen.query_one("#help-box")
        assert "Notifications" not in screen_text(app) and box.max_scroll_y > 0
        seen = screen_text(app)
        for _ in range(9):                  # the rest scrolls, down to the last pane's line
            await pilot.press("pagedown")
            await pilot.pause(0.1)
            seen += screen_text(app)
        for needle in ("n ", "k , . PgDn PgUp", "z ", "b ", "q ", "Ctrl+C", "Panes",
                       "Diagnostics", "Examples", "Notifications"):
            assert needle in seen, needle
        assert box.scroll_y > 0
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


# -- trouble -------------------------------------------------------------------------------

async def test_nonfinite_loss_pauses_and_says_so_then_checkpoint_and_quit():
    app, collector, channel = live_app(nonfinite_at=(1, 20))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().state == PAUSED)
        await on_screen(pilot, app, "PAUSED", "non-finite loss at E1 trn batch 20")
        assert collector.snapshot().batches_done == 21
        await pilot.press("c")
        await wait_for(pilot, lambda: collector.snapshot().checkpoint_total == 1)
        await pilot.press("q", "y")
        await exited(pilot, app)
    assert app.return_code == 0
    assert collector.snapshot().state == STOPPED


async def test_trainer_exception_is_shown_and_exits_non_zero():
    app, collector, channel = live_app(fail_at=(1, 30))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.trainer_exit_code is not None)
        # what failed and where: the location is drawn once the trainer thread has returned
        await wait_for(pilot, lambda: re.search(r"FakeTrainingError: CUDA error.*\n.*"
                                                r"at tests/fakerun\.py:\d+ in events",
                                                screen_text(app)))
        assert "FAILED" in screen_text(app)
        assert not app.trainer_running
        # nothing left to pause or checkpoint: the footer drops those keys
        await wait_for(pilot, lambda: "p Pause" not in screen_text(app))
        assert "c Checkpoint" not in screen_text(app)
        await pilot.press("q")                                # nothing to stop: no dialog
        await exited(pilot, app)
    assert app.return_code == 1
    assert "FakeTrainingError" in app.failure_traceback


async def test_finished_run_stays_on_screen_until_q():
    app, collector, channel = live_app(epochs=1, trn_batches=20, val_batches=5,
                                       batch_delay=0.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.trainer_exit_code is not None)
        await on_screen(pilot, app, "FINISHED", "run finished", "q exits")
        await pilot.press("3")                          # the log ends with the run's summary
        await on_screen(pilot, app, "INFO  run finished after ", "INFO    best epoch: ",
                        "INFO    go on with: luna-tui --headless --resume ")
        await pilot.press("1")
        await pilot.press("q")
        await exited(pilot, app)
    assert app.return_code == 0


async def test_q_after_the_run_ended_but_before_its_trainer_returned_asks_nothing():
    # the loop has said FINISHED and is closing its files: q must not ask to stop a run that
    # is over (the clean-clone CI caught the dialog once, under load); it leaves on return
    collector, channel = EventCollector(), RecordingChannel()
    closing = threading.Event()

    def runner() -> int:
        collector(RunFinished(state="finished", exit_code=0, t=1.0))
        closing.wait(60)                                  # the sinks closing, slowly
        return 0
    app = CockpitApp(LocalLink(collector, channel, runner=runner), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, poll_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snap.ended)
        assert app.trainer_exit_code is None
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuit) and app.is_running
        closing.set()
        await exited(pilot, app)
    assert app.return_code == 0


async def test_a_crash_in_the_ui_still_stops_the_training_thread():
    class Broken(CockpitApp):
        def on_mount(self) -> None:
            self.set_timer(0.2, self.explode)

        def explode(self) -> None:
            raise RuntimeError("ui bug")

    collector, channel = EventCollector(), RecordingChannel()
    trainer = FakeTrainer(sinks=[collector], commands=channel, epochs=50,
                          trn_batches=1000, batch_delay=0.002)
    app = Broken(LocalLink(collector, channel, runner=trainer.main), clock=frozen_clock(),
                 system_probe=lambda: FROZEN_READING)
    with pytest.raises(RuntimeError, match="ui bug"):
        async with app.run_test(size=(80, 24)):
            await exited(None, app, timeout=60)         # the timer's exception ends it
    deadline = time.monotonic() + 5
    while app.trainer_running and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert "stop" in channel.sent
    assert not app.trainer_running


async def test_sigterm_quits_like_a_confirmed_q(monkeypatch):
    # The handlers the app installs are called directly: a real SIGTERM would go to pytest.
    # (A real signal through asyncio's handler is what test_attach_sighup.py sends.)
    loop = asyncio.get_running_loop()
    installed, removed = {}, []
    monkeypatch.setattr(loop, "add_signal_handler",
                        lambda sig, handler: installed.__setitem__(sig, handler))
    monkeypatch.setattr(loop, "remove_signal_handler", removed.append)
    app, collector, channel = live_app()
    app.handle_signals = True
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: collector.snapshot().batches_done > 3)
        assert set(installed) == {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
        installed[signal.SIGTERM]()
        await exited(pilot, app)
    assert channel.sent == ["stop"]
    assert collector.snapshot().state == STOPPED
    assert collector.snapshot().last_checkpoint.reason == "stop"
    assert not app.trainer_running
    assert sorted(removed) == sorted(installed)   # handlers are gone with the app
    assert app._signals == []


# -- responsiveness ------------------------------------------------------------------------

async def test_fast_trainer_never_waits_for_the_ui_and_plots_redraw_rarely():
    app, collector, channel = live_app(epochs=2, trn_batches=3000, val_batches=300,
                                       batch_delay=0.0)
    app.poll_interval = 0.25
    started = time.monotonic()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.trainer_exit_code is not None, timeout=60)
        elapsed = time.monotonic() - started
        batch_plot = app.query_one("#plot-batch", TrendPlot)
        # at most one live-loss redraw per 0.5 s (+ the first), not one per batch
        assert batch_plot.redraws <= elapsed / 0.5 + 2
        assert app.query_one("#plot-loss", TrendPlot).redraws <= 5   # per epoch, not batch
        await pilot.press("q")
    assert collector.snapshot().batches_done == 300


# -- entry point ---------------------------------------------------------------------------

class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_run_cockpit_refuses_without_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=False))
    assert run_cockpit(["--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--headless" in err[0]


def test_run_cockpit_refuses_a_dumb_terminal(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", FakeStream(tty=True))
    monkeypatch.setattr(sys, "stdout", FakeStream(tty=True))
    monkeypatch.setenv("TERM", "dumb")
    assert run_cockpit([]) == 2
    assert "--headless" in capsys.readouterr().err


def test_terminal_problem_accepts_a_real_looking_terminal():
    ok = app_module.terminal_problem(FakeStream(True), FakeStream(True),
                                     {"TERM": "tmux-256color"})
    assert ok is None


async def test_build_cockpit_runs_luna_training_app_in_a_worker_thread(monkeypatch):
    calls = {}

    class LunaTrainingApp(FakeTrainer):
        def __init__(self, sys_argv, *, sinks, commands, interactive=False):
            calls.update(sys_argv=sys_argv, sinks=sinks, commands=commands,
                         interactive=interactive)
            super().__init__(sys_argv, sinks, commands, epochs=1, trn_batches=10,
                             val_batches=2)

        def main(self) -> int:
            calls["thread"] = threading.current_thread()
            super().main()
            return 3

    fake = types.ModuleType("luna_core.training")
    fake.LunaTrainingApp = LunaTrainingApp
    monkeypatch.setitem(sys.modules, "luna_core.training", fake)
    app = build_cockpit(["--epochs", "1"], clock=frozen_clock(),
                        system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.trainer_exit_code is not None)
        await pilot.press("q")
        await exited(pilot, app)
    assert calls["sys_argv"] == ["--epochs", "1"]
    assert calls["sinks"] == [app.source]
    assert calls["commands"] is app.commands
    assert calls["interactive"] is True            # non-finite loss pauses, not stops
    assert calls["thread"] is not threading.main_thread()
    assert app.return_code == 3


async def test_build_cockpit_reports_a_trainer_that_raises(monkeypatch):
    class LunaTrainingApp:
        def __init__(self, sys_argv, *, sinks, commands, interactive=False):
            pass

        def main(self) -> int:
            raise ValueError("no such data dir")

    fake = types.ModuleType("luna_core.training")
    fake.LunaTrainingApp = LunaTrainingApp
    monkeypatch.setitem(sys.modules, "luna_core.training", fake)
    app = build_cockpit([], clock=frozen_clock(), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.trainer_exit_code is not None)
        await on_screen(pilot, app, "ValueError: no such data dir")
        await pilot.press("q")
        await exited(pilot, app)
    assert app.return_code == 1
    snap = app.source.snapshot()
    assert snap.state == FAILED and isinstance(snap.finished, RunFinished)


class NoFileno(io.StringIO):
    """Like Textual's stdout/stderr capture while an app runs: fileno() is -1."""

    def fileno(self) -> int:
        return -1


def _child_ok(queue) -> None:
    queue.put("ok")


@pytest.mark.skipif(os.name != "posix", reason="forkserver is POSIX only")
def test_workers_can_start_from_the_training_thread_while_textual_captures_stdio(
        monkeypatch):
    import multiprocessing

    app_module.prepare_worker_processes()
    ctx = multiprocessing.get_context("forkserver")
    monkeypatch.setattr(sys, "stdout", NoFileno())
    monkeypatch.setattr(sys, "stderr", NoFileno())
    result = {}

    def start_worker() -> None:       # DataLoader starts its workers in the trainer thread
        queue = ctx.Queue()
        proc = ctx.Process(target=_child_ok, args=(queue,))
        proc.start()
        result["got"] = queue.get(timeout=60)
        proc.join(30)
        result["code"] = proc.exitcode

    thread = threading.Thread(target=start_worker)
    thread.start()
    thread.join(60)
    assert result == {"got": "ok", "code": 0}


def test_describe_exception_says_what_and_where():
    try:
        {}["missing"]
    except KeyError as exc:
        text = describe_exception(exc)
    assert text.startswith("KeyError: 'missing' at ")
    assert re.search(r"test_cockpit_app\.py:\d+ in test_describe_exception", text)


async def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = CockpitApp(LocalLink(mid_epoch_two(), CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(pilot, app, "NODULES MISSED", "? Help")
        svg = app.export_screenshot()
        assert app.no_color
    # every colour the terminal would draw is a grey (window chrome aside)
    body = svg.split("<g transform", 1)[1] if "<g transform" in svg else svg
    styles = re.findall(r"fill:\s*#([0-9a-fA-F]{6})", svg.split("</style>")[0])
    fills = re.findall(r'fill="#([0-9a-fA-F]{6})"', body)
    for hexcolor in styles + fills:
        r, g, b = (int(hexcolor[i:i + 2], 16) for i in (0, 2, 4))
        if hexcolor.lower() in ("ff5f57", "febc2e", "28c840"):   # the window's buttons
            continue
        assert max(r, g, b) - min(r, g, b) <= 8, hexcolor

