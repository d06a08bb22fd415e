"""The training cockpit: a Textual app over a snapshot source and a command sink.

``CockpitApp`` knows nothing about where events come from (``source`` is anything with a
``snapshot()`` method, normally an ``EventCollector``) or where commands go (``commands`` is
anything with pause / resume / toggle_pause / checkpoint / stop). luna_tui.launch wires it to
the in-process trainer, which runs in a Textual thread worker; luna_tui.attach to a run's
event file and control socket, through the public hooks ``show``, ``begin_quit``,
``request_stop`` and ``command_refused``.

The trainer thread never touches widgets or the app's state: it only calls the collector,
and its worker returns a ``TrainerResult`` that the app reads when the worker's state
changes. The UI polls the snapshot a few times a second.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from luna_core.run.commands import Command
from luna_core.run.events import PAUSED
from luna_core.run.failure import describe_exception
from luna_tui.link.local import Runner, TrainerResult, TrainerThread
from luna_tui.link.system_probe import SystemProbe, SystemReading
from luna_tui.messages import CheckpointArrived, RunEnded
from luna_tui.model import layout as plan
from luna_tui.model import summaries
from luna_tui.model.alarm import BEL, desktop_notification
from luna_tui.model.news import SnapshotNews
from luna_tui.model.snapshot import RunSnapshot, SnapshotSource
from luna_tui.screens.confirm import ConfirmQuit, ConfirmSetting
from luna_tui.screens.help import HelpScreen
from luna_tui.terminal import (
    Installed,
    install_quit_signals,
    remove_signals,
    stdio_to_devnull_for_good,
)
from luna_tui.views import VIEW_BINDINGS, ViewsMixin, short_path
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

#: After a hang-up, how long the app may take to close on its own once nothing is left to
#: save, before the process ends itself (Textual can block restoring a terminal that is gone).
HANGUP_GRACE_S = 5.0
#: Notifications on screen at once, at most.
MAX_TOASTS = 2
#: Checkpoints announced with a toast: the ones asked for, and the alarm's.
TOASTED_CHECKPOINTS = ("request", "nonfinite")


class Commands(Protocol):
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def toggle_pause(self) -> None: ...
    def checkpoint(self) -> None: ...
    def stop(self) -> None: ...
    def set(self, lr: float | None = None, momentum: float | None = None,
            source: str = "") -> None: ...


def local_now() -> datetime:
    return datetime.now().astimezone()


class CockpitApp(ViewsMixin, App[int]):
    """Shows a training run and sends it commands."""

    CSS_PATH = Path(__file__).with_name("cockpit.tcss")   # absolute: subclasses elsewhere
    TITLE = "LUNA cockpit"
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None          # no pane looks selected until Tab, l or a click picks one
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("c", "checkpoint", "Checkpoint"),
        *VIEW_BINDINGS,
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
                 plot_interval: float = 1.0, handle_signals: bool = False,
                 own_probe: bool | None = None, baseline=None,
                 runs_dir: str | None = None, quiet: bool = False,
                 preflight: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.preflight = preflight        # `luna-tui check`'s report, shown while loading
        self.quiet = quiet                # no bell, no desktop notification escapes
        self.baseline = baseline          # a RunHistory (luna_core.run.compare) or None
        self.runs_dir = runs_dir          # where `b` looks for a baseline
        self.source = source
        self.commands = commands
        self.clock: Clock = clock or local_now
        # the probe is closed with the app when the app made it (or, own_probe, was given it)
        self._own_probe = system_probe is None if own_probe is None else own_probe
        self.system_probe = system_probe or SystemProbe()
        self.runner = runner
        self._trainer = None if runner is None else TrainerThread(runner)
        self.poll_interval = poll_interval
        self.system_interval = system_interval
        self.plot_interval = plot_interval
        self.handle_signals = handle_signals
        self.snap: RunSnapshot = RunSnapshot()
        self.failure: str | None = None            # the trainer thread raised: what, where
        self.failure_traceback: str | None = None
        self.trainer_exit_code: int | None = None  # set when the in-process trainer returned
        self._worker: Worker[TrainerResult] | None = None
        self._request: str | None = None           # "pause" / "resume" / "checkpoint"
        self._quitting = False
        self._seen_version = -1
        self._news = SnapshotNews()
        self._ended_seen: bool | None = None
        self._toasts: list[tuple[float, tuple[str, str, str]]] = []   # (expires, notify args)
        self._bindings_key: tuple | None = None
        self._signals: Installed = []              # the signal handlers on the loop
        self.hung_up = False                       # SIGHUP: the terminal is gone

    def on_mount(self) -> None:
        self.apply_layout()
        self.query_one(ClassTablePane).versus = lambda snap: summaries.baseline_line(
            snap, self.baseline)
        if self.baseline is not None:
            self.set_baseline(self.baseline)
        # first fill once the layout is known, so every pane renders at its real width
        self.call_after_refresh(self.poll_system)
        self.call_after_refresh(self.poll)
        self.set_interval(self.poll_interval, self.poll, name="poll-snapshot")
        self.set_interval(self.system_interval, self.poll_system, name="poll-system")
        if self._trainer is not None:
            self._worker = self.run_worker(self._trainer.run, name="trainer", group="trainer",
                                           thread=True, exit_on_error=False)
        if self.preflight is not None:
            self.run_worker(self._run_preflight, name="preflight", thread=True,
                            exit_on_error=False)
        if self.handle_signals:
            # SIGTERM, SIGHUP (the SSH link dropped) and a SIGINT from kill (Ctrl+C in the
            # cockpit is a key, not a signal) all quit like a confirmed `q`
            install_quit_signals(self._signals, on_quit=self.begin_quit,
                                 on_hangup=self._hang_up)

    def _run_preflight(self) -> None:
        """The data check while the loader warms up (a thread; one message back)."""
        try:
            text = self.preflight()
        except Exception as exc:  # noqa: BLE001 - a check that fails must not stop the run
            text = f"check: could not run ({type(exc).__name__}: {exc})"
        self.call_from_thread(self.show_preflight, text)

    def show_preflight(self, text: str) -> None:
        """`luna-tui check`'s facts in the log, before the first batch."""
        log = self.query_one(LogPane)
        for line in text.rstrip().splitlines():
            if line.strip():
                log.add_local("check: " + line.strip(), "INFO", self.clock().timestamp())

    def on_unmount(self) -> None:
        # Whatever ended the app, never leave the training loop running on its own.
        if self.trainer_running:
            self.commands.stop()
        if self._own_probe and hasattr(self.system_probe, "close"):
            self.system_probe.close()
        remove_signals(self._signals)

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
        stdio_to_devnull_for_good()
        threading.Thread(target=self._exit_after_hangup, name="luna-hangup",
                         daemon=True).start()
        self.begin_quit()

    def _exit_after_hangup(self) -> None:
        # the trainer's result straight from its thread: the UI loop may hang
        result = None if self._trainer is None else self._trainer.wait()
        time.sleep(HANGUP_GRACE_S)
        os._exit(self.exit_code() if result is None else result.exit_code)

    # -- the trainer thread ------------------------------------------------------------

    @property
    def trainer_running(self) -> bool:
        """The in-process trainer thread was started and has not returned yet."""
        return self._worker is not None and self._trainer is not None and not self._trainer.done

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.SUCCESS:
            result = event.worker.result or TrainerResult(0)
            self.post_message(RunEnded(result.exit_code, result.failure, result.traceback))
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            error = event.worker.error
            self.post_message(RunEnded(1, None if error is None else describe_exception(error)))

    def on_run_ended(self, message: RunEnded) -> None:
        self.trainer_exit_code = message.exit_code
        if message.failure:
            self.failure, self.failure_traceback = message.failure, message.traceback
            for log in self.query(LogPane):
                for line in (self.failure_traceback or message.failure).rstrip().splitlines():
                    log.add_local(line, "ERROR", self.clock().timestamp())
            self.toast(message.failure, title="Training failed", severity="error", timeout=30)
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
            self.show(self.source.snapshot())
        except NoMatches:      # a timer that fires while the app shuts down
            pass

    def show(self, snap: RunSnapshot) -> None:
        """Show ``snap``. The hook for a subclass that derives more from each snapshot: it
        extends this and calls ``super().show(snap)``."""
        self.snap = snap
        self._settle_request(snap)
        ui = self.ui_status()
        self.query_one(ProgressPane).show(snap, self.clock(), ui)
        trends = self.query_one(TrendsPane)
        new_events = snap.version != self._seen_version
        if new_events:
            self._seen_version = snap.version
            self.query_one(ClassTablePane).show(snap)
            self.query_one(BottleneckPane).show(snap)
            self.query_one(LogPane).show(snap)
            self._announce(snap)
        trends.show(snap)
        key = (snap.state, self._request, self._quitting, self.run_over)
        if new_events or key != self._bindings_key:
            self.relayout()     # a pane may have grown (the alarm banner, a stopping line)
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    def poll_system(self) -> None:
        try:
            reading = self.system_probe()
        except Exception:  # noqa: BLE001 - a probe failure must not take the cockpit down
            reading = SystemReading(gpu_note="system readings unavailable")
        self._reading = reading
        try:
            self.query_one(SystemPane).show(reading)
            if self.layout_plan is not None and "system" in self.layout_plan.collapsed:
                self.query_one("#system-line", Static).update(summaries.system_line(reading))
        except NoMatches:      # shutting down
            pass

    def _settle_request(self, snap: RunSnapshot) -> None:
        if self._request == "pause" and (snap.state == PAUSED or snap.ended):
            self._request = None
            if snap.state == PAUSED:
                self.toast(f"at {summaries.where(snap)} · p resumes", title="Paused",
                           timeout=4)
        elif self._request == "resume" and snap.state != PAUSED:
            self._request = None
        elif self._request is not None and snap.ended:
            self._request = None

    def _announce(self, snap: RunSnapshot) -> None:
        """Notifications for what arrived since the last poll (not for what was there); the
        alarms and the run's end also call the user back through the terminal."""
        ended_before = self._ended_seen
        self._ended_seen = snap.ended
        checkpoints, notices = self._news.since_last(snap, self.failure)
        for ck in checkpoints:
            self.post_message(CheckpointArrived(ck.path, ck.reason))
        for n in notices:
            self.toast(n.message, title=n.title, severity=n.severity, timeout=n.timeout)
            self.call_user(n.title, n.message)
        if ended_before is False and snap.ended:
            self.call_user(f"Run {snap.state}", snap.run_dir or "luna-tui")

    def call_user(self, title: str, body: str) -> None:
        """The bell and a desktop notification (unless --quiet)."""
        if self.quiet:
            return
        self.terminal_write(BEL + desktop_notification(title, body,
                                                       in_tmux=bool(os.environ.get("TMUX"))))

    def terminal_write(self, data: str) -> None:
        """Straight to the terminal, in order with Textual's output (as ``App.bell`` does)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(data)

    def on_checkpoint_arrived(self, message: CheckpointArrived) -> None:
        """A toast only for a checkpoint someone asked for (and the alarm's); the epoch-end
        ones are in the progress pane and the log."""
        if self._request == "checkpoint":
            self._request = None
        if message.reason in TOASTED_CHECKPOINTS:
            self.toast(short_path(message.path, self.snap.run_dir),
                       title=f"Checkpoint saved ({message.reason})", timeout=8)

    def toast(self, message: str, *, title: str = "", severity: str = "information",
              timeout: float = 5.0) -> None:
        """``notify``, with at most ``MAX_TOASTS`` on screen: the oldest goes first."""
        now = time.monotonic()
        live = [t for t in self._toasts if t[0] > now]
        if len(live) >= MAX_TOASTS:
            self.clear_notifications()
            live = live[len(live) - MAX_TOASTS + 1:]
            for expires, (text, head, level) in live:
                self.notify(text, title=head, severity=level, timeout=max(0.5, expires - now))
        live.append((now + timeout, (message, title, severity)))
        self._toasts = live
        self.notify(message, title=title, severity=severity, timeout=timeout)

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
        if action in ("checkpoint", "steer_lr"):
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
        self.toast("Saved at the next batch boundary.", title="Checkpoint requested",
                   timeout=4)
        self.poll()

    def action_steer_lr(self, factor: float) -> None:
        """`[` halves, `]` doubles the learning rate, once confirmed."""
        old = self.snap.lr
        if old is None:
            self.toast("The run has not said its learning rate yet.", title="lr", timeout=4)
            return
        new = old * factor

        def answered(yes: bool | None) -> None:
            if yes:
                self.commands.set(lr=new, source="cockpit")
                self.toast(f"lr {old:g} → {new:g} from the next batch", title="lr change sent",
                           timeout=4)

        self.push_screen(ConfirmSetting(old, new, self.snap.momentum), answered)

    def action_focus_log(self) -> None:
        lay = self.layout_plan
        if lay is not None and ("log" not in lay.rows or "log" in lay.collapsed):
            self.action_view(plan.LOG)
        self.query_one(LogPane).focus()

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
            self.begin_quit()

    def action_quit_now(self) -> None:
        """Ctrl+C / Ctrl+Q: a confirmed quit."""
        while len(self.screen_stack) > 1 and isinstance(self.screen,
                                                       ConfirmQuit | ConfirmSetting | HelpScreen):
            self.pop_screen()
        self.begin_quit()

    async def action_quit(self) -> None:
        self.begin_quit()

    @property
    def quitting(self) -> bool:
        """A stop was asked for: the cockpit leaves once the run has ended."""
        return self._quitting

    def begin_quit(self) -> None:
        """A confirmed quit (`q` then y, Ctrl+C, SIGTERM, SIGHUP): stop the run at a batch
        boundary (it checkpoints) and exit once it has. The hook for a subclass that leaves
        differently."""
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

    def request_stop(self) -> None:
        """Ask the run to stop (it checkpoints first) and wait for it to end."""
        self._quitting = True
        self.commands.stop()
        self.poll()

    def command_refused(self, command: str) -> None:
        """A command did not reach the run: forget the request that waits on it (a refused
        stop ends the quitting)."""
        if command == Command.STOP.value:
            self._quitting = False
        self._request = None

    def _still_stopping(self) -> None:
        self.toast("Waiting for the training loop to finish its batch and save a "
                   "checkpoint…", title="Stopping", timeout=4)
