"""The training cockpit: a Textual app over a snapshot source and a command sink.

``CockpitApp`` knows nothing about where events come from (``source`` is anything with a
``snapshot()`` method, normally an ``EventCollector``) or where commands go (``commands`` is
anything with pause / resume / toggle_pause / checkpoint / stop). ``run_cockpit`` wires it to
the in-process trainer, which runs in a Textual thread worker.

The trainer thread never touches widgets: it only calls the collector. The UI polls the
snapshot a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from luna_core.run.events import FAILED, PAUSED, RunFinished
from luna_tui.collector import EventCollector, RunSnapshot, SnapshotSource
from luna_tui.confirm import ConfirmQuit
from luna_tui.help import HelpScreen
from luna_tui.messages import CheckpointArrived, RunEnded
from luna_tui.system_probe import SystemProbe, SystemReading
from luna_tui.widgets import (
    BottleneckPane,
    ClassTablePane,
    LogPane,
    ProgressPane,
    SystemPane,
    TrendsPane,
)
from luna_tui.widgets.progress import UiStatus

Clock = Callable[[], datetime]
Runner = Callable[[], int]

#: After a hang-up, how long the app may take to close on its own once nothing is left to
#: save, before the process ends itself (Textual can block restoring a terminal that is gone).
HANGUP_GRACE_S = 5.0


class Commands(Protocol):
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def toggle_pause(self) -> None: ...
    def checkpoint(self) -> None: ...
    def stop(self) -> None: ...


def local_now() -> datetime:
    return datetime.now().astimezone()


def _short_path(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    for anchor in ("luna_core", "luna_tui", "site-packages"):
        if anchor in parts:
            i = parts.index(anchor)
            return "/".join(parts[i + (1 if anchor == "site-packages" else 0):])
    return "/".join(parts[-2:])


def describe_exception(exc: BaseException) -> str:
    """'ValueError: boom at luna_core/training.py:120 in doTraining' (what failed, where)."""
    frames = traceback.extract_tb(exc.__traceback__)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not frames:
        return what
    inner = frames[-1]
    ours = next((f for f in reversed(frames) if "luna_core" in f.filename.replace("\\", "/")),
                None)
    where = f" at {_short_path(inner.filename)}:{inner.lineno} in {inner.name}"
    if ours is not None and ours is not inner:
        where = (f" at {_short_path(ours.filename)}:{ours.lineno} in {ours.name}"
                 f" (innermost {_short_path(inner.filename)}:{inner.lineno})")
    return what + where


class CockpitApp(App[int]):
    """Shows a training run and sends it commands."""

    CSS_PATH = Path(__file__).with_name("cockpit.tcss")   # absolute: subclasses elsewhere
    TITLE = "LUNA cockpit"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("l", "focus_log", "Log"),
        Binding("q", "request_quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+c", "quit_now", "Quit now", show=False, priority=True),
        Binding("ctrl+q", "quit_now", "Quit now", show=False, priority=True),
    ]

    def __init__(self, source: SnapshotSource, commands: Commands, *,
                 clock: Clock | None = None,
                 system_probe: Callable[[], SystemReading] | None = None,
                 runner: Runner | None = None,
                 poll_interval: float = 1 / 3, system_interval: float = 1.0,
                 plot_interval: float = 1.0, handle_signals: bool = False) -> None:
        super().__init__()
        self.source = source
        self.commands = commands
        self.clock: Clock = clock or local_now
        self._own_probe = system_probe is None
        self.system_probe = system_probe or SystemProbe()
        self.runner = runner
        self.poll_interval = poll_interval
        self.system_interval = system_interval
        self.plot_interval = plot_interval
        self.handle_signals = handle_signals
        self.snap: RunSnapshot = RunSnapshot()
        self.failure: str | None = None            # the trainer thread raised: what, where
        self.failure_traceback: str | None = None
        self.trainer_exit_code: int | None = None  # set when the in-process trainer returned
        self._worker: Worker[int] | None = None
        self._trainer_done = threading.Event()
        self._request: str | None = None           # "pause" / "resume" / "checkpoint"
        self._quitting = False
        self._seen_version = -1
        self._seen_checkpoints: int | None = None
        self._seen_nonfinite: int | None = None
        self._seen_errors_state: str | None = None
        self._bindings_key: tuple | None = None
        self._signals: list[tuple[asyncio.AbstractEventLoop, int]] = []
        self.hung_up = False                       # SIGHUP: the terminal is gone

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="body"):
            yield ProgressPane(id="progress")
            yield ClassTablePane(id="classes")
            yield SystemPane(id="system")
            yield BottleneckPane(id="bottleneck")
            yield TrendsPane(id="trends", min_interval=self.plot_interval)
            yield LogPane(id="log", tz=lambda: self.clock().tzinfo)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#body").focus()
        # first fill once the layout is known, so every pane renders at its real width
        self.call_after_refresh(self.poll_system)
        self.call_after_refresh(self.poll)
        self.set_interval(self.poll_interval, self.poll, name="poll-snapshot")
        self.set_interval(self.system_interval, self.poll_system, name="poll-system")
        if self.runner is not None:
            self._worker = self.run_worker(self._run_trainer, name="trainer", group="trainer",
                                           thread=True, exit_on_error=False)
        if self.handle_signals:
            self._install_signal_handlers()

    def on_unmount(self) -> None:
        # Whatever ended the app, never leave the training loop running on its own.
        if self.trainer_running:
            self.commands.stop()
        if self._own_probe and hasattr(self.system_probe, "close"):
            self.system_probe.close()
        self._remove_signal_handlers()

    def _install_signal_handlers(self) -> None:
        """SIGTERM, SIGHUP (the SSH link dropped) and a SIGINT from kill (Ctrl+C in the
        cockpit is a key, not a signal) all quit like a confirmed `q`."""
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP", "SIGINT"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            handler = self._hang_up if name == "SIGHUP" else self._begin_quit
            try:
                loop.add_signal_handler(sig, handler)
                self._signals.append((loop, sig))
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _remove_signal_handlers(self) -> None:
        for loop, sig in self._signals:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        self._signals.clear()

    def _hang_up(self) -> None:
        """SIGHUP: the terminal is gone. Quit like a confirmed `q` (the loop stops at a batch
        boundary and checkpoints), with the standard streams on /dev/null from now on.

        Textual may then block for ever restoring the dead terminal (its output thread dies
        on the first write error, and the next write waits on its full queue), so once the
        trainer has returned — checkpoint written, files closed — the app gets
        HANGUP_GRACE_S to close on its own before the process ends itself."""
        if self.hung_up:
            return
        self.hung_up = True
        _stdio_to_devnull_for_good()
        threading.Thread(target=self._exit_after_hangup, name="luna-hangup",
                         daemon=True).start()
        self._begin_quit()

    def _exit_after_hangup(self) -> None:
        if self._worker is not None or self.runner is not None:
            self._trainer_done.wait()
        time.sleep(HANGUP_GRACE_S)
        os._exit(self.exit_code())

    # -- the trainer thread ------------------------------------------------------------

    @property
    def trainer_running(self) -> bool:
        """The in-process trainer thread was started and has not returned yet."""
        return self._worker is not None and not self._trainer_done.is_set()

    def _run_trainer(self) -> int:
        assert self.runner is not None
        try:
            return int(self.runner() or 0)
        except BaseException as exc:  # noqa: BLE001 - shown in the cockpit, exit non-zero
            self.failure = describe_exception(exc)
            self.failure_traceback = traceback.format_exc()
            return 1
        finally:
            self._trainer_done.set()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.SUCCESS:
            self.post_message(RunEnded(int(event.worker.result or 0), self.failure))
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            error = event.worker.error
            if error is not None and self.failure is None:
                self.failure = describe_exception(error)
            self.post_message(RunEnded(1, self.failure))

    def on_run_ended(self, message: RunEnded) -> None:
        self.trainer_exit_code = message.exit_code
        if message.failure:
            for log in self.query(LogPane):
                for line in (self.failure_traceback or message.failure).rstrip().splitlines():
                    log.add_local(line, "ERROR", self.clock().timestamp())
            self.notify(message.failure, title="Training failed", severity="error",
                        timeout=30)
        self.poll()
        if self._quitting:
            self.exit(return_code=self.exit_code())

    def exit_code(self) -> int:
        if self.trainer_exit_code is not None:
            return self.trainer_exit_code
        if self.failure:
            return 1
        finished = self.snap.finished
        if finished is not None:
            return finished.exit_code
        return 0

    @property
    def run_over(self) -> bool:
        """Nothing left to stop: the run ended (or the in-process trainer returned)."""
        if self._worker is not None:
            return self.trainer_exit_code is not None
        return self.snap.ended

    # -- polling -----------------------------------------------------------------------

    def ui_status(self) -> UiStatus:
        request = {"pause": "pause requested — the loop pauses after the current batch",
                   "resume": "resume requested",
                   "checkpoint": "checkpoint requested — saved after the current batch",
                   }.get(self._request or "")
        return UiStatus(request=request, quitting=self._quitting and not self.run_over,
                        failure=self.failure)

    def poll(self) -> None:
        try:
            self._poll()
        except NoMatches:      # a timer that fires while the app shuts down
            pass

    def _poll(self) -> None:
        snap = self.source.snapshot()
        self.snap = snap
        self._settle_request(snap)
        ui = self.ui_status()
        self.query_one(ProgressPane).show(snap, self.clock(), ui)
        trends = self.query_one(TrendsPane)
        if snap.version != self._seen_version:
            self._seen_version = snap.version
            self.query_one(ClassTablePane).show(snap)
            self.query_one(BottleneckPane).show(snap)
            self.query_one(LogPane).show(snap)
            self._announce(snap)
        trends.show(snap)
        key = (snap.state, self._request, self._quitting, self.run_over)
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    def poll_system(self) -> None:
        try:
            reading = self.system_probe()
        except Exception:  # noqa: BLE001 - a probe failure must not take the cockpit down
            reading = SystemReading(gpu_note="system readings unavailable")
        try:
            self.query_one(SystemPane).show(reading)
        except NoMatches:      # shutting down
            pass

    def _settle_request(self, snap: RunSnapshot) -> None:
        if self._request == "pause" and (snap.state == PAUSED or snap.ended):
            self._request = None
        elif self._request == "resume" and snap.state != PAUSED:
            self._request = None
        elif self._request is not None and snap.ended:
            self._request = None

    def _announce(self, snap: RunSnapshot) -> None:
        """Notifications for what arrived since the last poll (not for what was there)."""
        if self._seen_checkpoints is None:
            self._seen_checkpoints = snap.checkpoint_total
            self._seen_nonfinite = snap.nonfinite_count
            self._seen_errors_state = snap.state
            return
        new = snap.checkpoint_total - self._seen_checkpoints
        if new > 0:
            self._seen_checkpoints = snap.checkpoint_total
            for ck in snap.checkpoints[-min(new, len(snap.checkpoints)):]:
                self.post_message(CheckpointArrived(ck.path, ck.reason))
        if snap.nonfinite_count != self._seen_nonfinite:
            self._seen_nonfinite = snap.nonfinite_count
            nf = snap.last_nonfinite
            if nf is not None:
                what = "run paused" if nf.action == "pause" else f"action: {nf.action}"
                self.notify(f"Non-finite loss at E{nf.epoch} {nf.phase} batch {nf.batch_ndx}"
                            f" — {what}. c checkpoints, p resumes, q quits.",
                            title="Non-finite loss", severity="error", timeout=15)
        if snap.state != self._seen_errors_state:
            self._seen_errors_state = snap.state
            if snap.state == FAILED and self.failure is None:
                self.notify(snap.state_detail or "the training loop failed",
                            title="Training failed", severity="error", timeout=30)

    def on_checkpoint_arrived(self, message: CheckpointArrived) -> None:
        if self._request == "checkpoint":
            self._request = None
        self.notify(message.path, title=f"Checkpoint saved ({message.reason})", timeout=8)

    # -- actions -----------------------------------------------------------------------

    def _effective_paused(self) -> bool:
        if self._request == "pause":
            return True
        if self._request == "resume":
            return False
        return self.snap.state == PAUSED

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        active = not self.run_over and not self._quitting
        if action == "pause":
            return active and not self._effective_paused()
        if action == "resume":
            return active and self._effective_paused()
        if action == "checkpoint":
            return active
        return True

    def action_pause(self) -> None:
        self.commands.pause()
        self._request = "pause"
        self.poll()

    def action_resume(self) -> None:
        self.commands.resume()
        self._request = "resume"
        self.poll()

    def action_checkpoint(self) -> None:
        self.commands.checkpoint()
        self._request = "checkpoint"
        self.notify("Saved at the next batch boundary.", title="Checkpoint requested",
                    timeout=4)
        self.poll()

    def action_focus_log(self) -> None:
        log = self.query_one(LogPane)
        log.focus()
        log.scroll_visible()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_request_quit(self) -> None:
        if self.run_over:
            self.exit(return_code=self.exit_code())
            return
        if self._quitting:
            self._still_stopping()
            return
        self.push_screen(ConfirmQuit(running=True), self._on_quit_answer)

    def _on_quit_answer(self, yes: bool | None) -> None:
        if yes:
            self._begin_quit()

    def action_quit_now(self) -> None:
        """Ctrl+C / Ctrl+Q: a confirmed quit."""
        while len(self.screen_stack) > 1 and isinstance(self.screen,
                                                       ConfirmQuit | HelpScreen):
            self.pop_screen()
        self._begin_quit()

    async def action_quit(self) -> None:
        self._begin_quit()

    def _begin_quit(self) -> None:
        if self._quitting:
            self._still_stopping()
            return
        self._quitting = True
        if self.run_over:
            self.exit(return_code=self.exit_code())
            return
        self.commands.stop()
        if self._worker is None:
            # Nothing of ours to wait for (e.g. a remote run): the stop is sent, leave now.
            self.exit(return_code=self.exit_code())
            return
        self.poll()

    def _still_stopping(self) -> None:
        self.notify("Waiting for the training loop to finish its batch and save a "
                    "checkpoint…", title="Stopping", timeout=4)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

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


def guard_trainer(train: Runner, collector: EventCollector) -> Runner:
    """Run ``train``; if it raises, make sure the collector knows the run failed (the
    exception still propagates, so the app can show what failed and where)."""

    def guarded() -> int:
        try:
            return int(train() or 0)
        except BaseException as exc:
            if collector.snapshot().finished is None:
                collector(RunFinished(state=FAILED, exit_code=1,
                                      error=describe_exception(exc)))
            raise

    return guarded


def build_cockpit(sys_argv: list[str], *, clock: Clock | None = None,
                  system_probe: Callable[[], SystemReading] | None = None,
                  **app_kwargs: Any) -> CockpitApp:
    """The app for an in-process training run with ``sys_argv`` (the headless options)."""
    from luna_core.run.commands import CommandChannel

    channel = CommandChannel()
    collector = EventCollector()

    def train() -> int:
        from luna_core.training import LunaTrainingApp  # lazily: heavy, and may be absent

        # interactive: a non-finite loss pauses the run (the user decides) instead of
        # stopping it
        return LunaTrainingApp(sys_argv=list(sys_argv), sinks=[collector],
                               commands=channel, interactive=True).main()

    return CockpitApp(collector, channel, clock=clock, system_probe=system_probe,
                      runner=guard_trainer(train, collector), **app_kwargs)


@contextlib.contextmanager
def _stdio_to_devnull():
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


def _stdio_to_devnull_for_good() -> None:
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

        with _stdio_to_devnull():
            forkserver.ensure_running()
    except Exception:  # noqa: BLE001
        pass


def run_cockpit(sys_argv: list[str]) -> int:
    """Open the cockpit and train in a thread; returns the trainer's exit code."""
    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui: the cockpit needs an interactive terminal ({problem}); "
              f"use --headless", file=sys.stderr)
        return 2
    prepare_worker_processes()
    app = build_cockpit(sys_argv, handle_signals=True)
    app.run()
    code = app.exit_code() if app.return_code is None else app.return_code
    snap = app.source.snapshot()
    if app.failure_traceback:
        print(app.failure_traceback.rstrip(), file=sys.stderr)
    if app.failure or snap.state == FAILED:
        print(f"luna-tui: training failed: {app.failure or snap.state_detail}", file=sys.stderr)
    elif snap.finished is not None:
        last = snap.finished.last_checkpoint or (
            snap.last_checkpoint.path if snap.last_checkpoint else None)
        print(f"luna-tui: run {snap.finished.state}"
              + (f"; last checkpoint {last}" if last else ""), file=sys.stderr)
    return int(code or 0)
