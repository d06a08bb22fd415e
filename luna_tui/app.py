"""The training cockpit: one Textual app over a ``RunLink`` (luna_tui.link).

The link says where the run lives: in this process (``LocalLink``: the app runs the trainer in
a thread worker; quitting stops the run, which checkpoints, and waits for it) or in another
(``RemoteLink``, `luna-tui attach`: quitting detaches, or stops the run when asked; it may be
read-only). The cockpit screen (luna_tui.screens.cockpit) lays out the panes; the app polls the
link's snapshot a few times a second, hands it to the screen, turns what is new into
notifications, and sends the keys' commands.

The trainer thread never touches widgets or the app's state: it only feeds the collector, and
its worker returns a ``TrainerResult`` that the app reads when the worker's state changes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from luna_core.run import events as ev
from luna_core.run.commands import Command
from luna_core.run.failure import describe_exception
from luna_core.run.runs import CRASHED
from luna_tui.link import RunLink
from luna_tui.link.local import TrainerResult
from luna_tui.link.system_probe import SystemProbe, SystemReading
from luna_tui.messages import CheckpointArrived, CommandFailed, RunEnded
from luna_tui.model import summaries
from luna_tui.model.alarm import BEL, desktop_notification
from luna_tui.model.endings import ENDED_WORDS, resume_command
from luna_tui.model.news import SnapshotNews
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.screens.cockpit import CockpitScreen, short_path
from luna_tui.screens.confirm import AttachQuit, ConfirmQuit, ConfirmSetting
from luna_tui.screens.help import HelpScreen, key_rows
from luna_tui.terminal import (
    Installed,
    install_quit_signals,
    remove_signals,
    stdio_to_devnull_for_good,
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
#: Keys that steer the run: refused (with the reason) while the link is read-only.
STEERING = ("pause", "resume", "checkpoint", "steer_lr")
#: Actions of one kind of link only.
LOCAL_ONLY = ("request_quit", "quit_now")
ATTACHED_ONLY = ("leave", "detach")

def local_now() -> datetime:
    return datetime.now().astimezone()


class CockpitApp(App[int]):
    """Shows a training run and sends it commands, over ``link``."""

    CSS_PATH = Path(__file__).with_name("cockpit.tcss")
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None          # no pane looks selected until Tab, l or a click picks one
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("q", "request_quit", "Quit",
                tooltip="quit: asks first (y or Enter); the loop stops at a batch boundary, "
                        "checkpoints, and the cockpit exits"),
        Binding("q", "leave", "Quit",
                tooltip="leave: detach (the default; the run goes on) or stop the run (it "
                        "checkpoints, then stops)"),
        Binding("ctrl+c", "quit_now", "Quit now", show=False, priority=True,
                tooltip="quit without asking (still stops cleanly and checkpoints)"),
        Binding("ctrl+q", "quit_now", "Quit now", show=False, priority=True),
        Binding("ctrl+c", "detach", "Detach", show=False, priority=True,
                tooltip="detach without asking (the run goes on)"),
        Binding("ctrl+q", "detach", "Detach", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?",
                tooltip="this help; Esc closes it"),
        Binding("d", "detach", "Detach",
                tooltip="detach now: the run goes on (luna-tui attach RUN_DIR to come back)"),
    ]

    def __init__(self, link: RunLink, *, clock: Clock | None = None,
                 system_probe: Callable[[], SystemReading] | None = None,
                 poll_interval: float = 1 / 3, system_interval: float = 1.0,
                 plot_interval: float = 1.0, handle_signals: bool = False,
                 own_probe: bool | None = None, baseline=None,
                 runs_dir: str | None = None, quiet: bool = False,
                 preflight: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.link = link
        self.title = link.title
        self.preflight = preflight        # `luna-tui check`'s report, shown while loading
        self.quiet = quiet                # no bell, no desktop notification escapes
        self.clock: Clock = clock or local_now
        # the probe is closed with the app when the app made it (or, own_probe, was given it)
        self._own_probe = system_probe is None if own_probe is None else own_probe
        self.system_probe = system_probe or SystemProbe()
        self.poll_interval = poll_interval
        self.system_interval = system_interval
        self.handle_signals = handle_signals
        self.cockpit = CockpitScreen(clock=self.clock, plot_interval=plot_interval,
                                     baseline=baseline, runs_dir=runs_dir)
        self.snap: RunSnapshot = RunSnapshot()
        self.read_only: str | None = None          # why the steering keys cannot act now
        self.outcome: str | None = None            # attached: "detached", "stopped", "closed"
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

    @property
    def source(self):
        """The link's snapshot source (an EventCollector, or a RunFileSource)."""
        return self.link.source

    @property
    def commands(self):
        return self.link.commands

    def get_default_screen(self) -> CockpitScreen:
        return self.cockpit

    def on_mount(self) -> None:
        self.link.start(lambda command, error: self.post_message(CommandFailed(command, error)))
        # first fill once the layout is known, so every pane renders at its real width
        self.call_after_refresh(self.poll_system)
        self.call_after_refresh(self.poll)
        self.set_interval(self.poll_interval, self.poll, name="poll-snapshot")
        self.set_interval(self.system_interval, self.poll_system, name="poll-system")
        trainer = getattr(self.link, "trainer", None)
        if trainer is not None:
            self._worker = self.run_worker(trainer.run, name="trainer", group="trainer",
                                           thread=True, exit_on_error=False)
        if self.preflight is not None:
            self.run_worker(self._run_preflight, name="preflight", thread=True,
                            exit_on_error=False)
        if self.handle_signals:
            # SIGTERM, SIGHUP (the SSH link dropped) and a SIGINT from kill (Ctrl+C in the
            # cockpit is a key, not a signal): a confirmed quit, or a detach when attached
            install_quit_signals(self._signals, on_quit=self.begin_quit,
                                 on_hangup=self._hang_up)

    def _run_preflight(self) -> None:
        """The data check while the loader warms up (a thread; one message back)."""
        try:
            text = self.preflight()
        except Exception as exc:  # noqa: BLE001 - a check that fails must not stop the run
            text = f"check: could not run ({type(exc).__name__}: {exc})"
        self.call_from_thread(self.cockpit.add_log_lines, text, "INFO", "check: ")

    def on_unmount(self) -> None:
        # Whatever ended the app, never leave an in-process training loop running on its own.
        if self.trainer_running:
            self.commands.stop()
        self.link.close()
        if self._own_probe and hasattr(self.system_probe, "close"):
            self.system_probe.close()
        remove_signals(self._signals)

    def _hang_up(self) -> None:
        """SIGHUP: the terminal is gone. Quit like a confirmed `q` (in-process: the loop stops
        at a batch boundary and checkpoints; attached: detach), with the standard streams on
        /dev/null from now on.

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
        trainer = getattr(self.link, "trainer", None)
        result = None if trainer is None else trainer.wait()
        time.sleep(HANGUP_GRACE_S)
        os._exit(self.exit_code() if result is None else result.exit_code)

    # -- the trainer thread ------------------------------------------------------------

    @property
    def trainer_running(self) -> bool:
        """The in-process trainer thread was started and has not returned yet."""
        trainer = getattr(self.link, "trainer", None)
        return self._worker is not None and trainer is not None and not trainer.done

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
            self.cockpit.add_log_lines(self.failure_traceback or message.failure, "ERROR")
            self.toast(message.failure, title="Training failed", severity="error", timeout=30)
        self.poll()
        if self._quitting:
            self.exit(return_code=self.exit_code())

    def exit_code(self) -> int:
        if self.link.attached:
            return 0                   # the run's own exit status is the run's business
        if self.trainer_exit_code is not None:
            return self.trainer_exit_code
        if self.failure:
            return 1
        finished = self.snap.finished
        return 0 if finished is None else finished.exit_code

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
                        failure=self.failure, read_only=self.read_only, title=self.link.title)

    def poll(self) -> None:
        try:
            self.show(self.link.snapshot())
        except NoMatches:      # a timer that fires while the app shuts down
            pass

    def show(self, snap: RunSnapshot) -> None:
        self.snap = snap
        reason = self.link.read_only_reason(snap)
        read_only_changed = reason != self.read_only
        self.read_only = reason
        self._settle_request(snap)
        new_events = snap.version != self._seen_version
        if new_events:
            self._seen_version = snap.version
            self._announce(snap)
        key = (snap.state, self._request, self._quitting, self.run_over, self.read_only)
        self.cockpit.show(snap, self.ui_status(), new_events=new_events,
                          relayout=new_events or key != self._bindings_key)
        if key != self._bindings_key or read_only_changed:
            self._bindings_key = key
            self.refresh_bindings()
        if self.link.attached and self._quitting and snap.ended:
            self._leave("stopped")

    def poll_system(self) -> None:
        try:
            reading = self.system_probe()
        except Exception:  # noqa: BLE001 - a probe failure must not take the cockpit down
            reading = SystemReading(gpu_note="system readings unavailable")
        try:
            self.cockpit.show_reading(reading)
        except NoMatches:      # shutting down
            pass

    def _settle_request(self, snap: RunSnapshot) -> None:
        if self._request == "pause" and (snap.state == ev.PAUSED or snap.ended):
            self._request = None
            if snap.state == ev.PAUSED:
                self.toast(f"at {summaries.where(snap)} · p resumes", title="Paused",
                           timeout=4)
        elif self._request == "resume" and snap.state != ev.PAUSED:
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
            if self.link.attached and not self._quitting:
                self._toast_attached_end(snap)
            self.call_user(f"Run {snap.state}", snap.run_dir or "luna-tui")

    def _toast_attached_end(self, snap: RunSnapshot) -> None:
        if snap.state == CRASHED:
            self.toast(f"{snap.state_detail}. Resume with: {resume_command(snap.run_dir)}",
                       title="Run ended unexpectedly", severity="error", timeout=30)
        elif snap.state in (ev.FINISHED, ev.STOPPED):
            self.toast(ENDED_WORDS[snap.state] + "; the cockpit is read-only now (q exits)",
                       title=f"Run {snap.state}", timeout=10)

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

    def on_command_failed(self, message: CommandFailed) -> None:
        """A command did not reach the run: forget the request that waits on it (a refused
        stop ends the quitting)."""
        if message.command == Command.STOP.value:
            self._quitting = False
        self._request = None
        self.toast(f"'{message.command}' did not reach the run: {message.error}",
                   title="The run does not answer", severity="error", timeout=10)
        self.poll()

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

    # -- which keys act ------------------------------------------------------------------

    def applies(self, action: str) -> bool:
        """Whether ``action`` belongs to this kind of link at all (the help lists only those)."""
        if action in LOCAL_ONLY:
            return not self.link.attached
        if action in ATTACHED_ONLY:
            return self.link.attached
        return True

    def _effective_paused(self) -> bool:
        if self._request == "pause":
            return True
        if self._request == "resume":
            return False
        return self.snap.state == ev.PAUSED

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.applies(action):
            return False
        if action == "read_only":
            return self.read_only is not None and not self._quitting
        if action in STEERING and self.read_only is not None:
            return False
        active = not self.run_over and not self._quitting
        if action == "pause":
            return active and not self._effective_paused()
        if action == "resume":
            return active and self._effective_paused()
        if action in ("checkpoint", "steer_lr"):
            return active
        return True

    # -- steering ------------------------------------------------------------------------

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

    def action_read_only(self, what: str) -> None:
        self.toast(f"Cannot {what}: {self.read_only}.", title="Read-only",
                   severity="warning", timeout=6)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            bindings = [*self.cockpit.BINDINGS, *self.BINDINGS]
            self.push_screen(HelpScreen(key_rows(
                b for b in bindings
                if self.applies(b.action.removeprefix("app.").split("(")[0]))))

    # -- leaving -------------------------------------------------------------------------

    @property
    def quitting(self) -> bool:
        """A stop was asked for: the cockpit leaves once the run has ended."""
        return self._quitting

    def action_request_quit(self) -> None:
        """`q` in-process: ask, then stop the run (it checkpoints) and exit once it has."""
        if self.run_over:
            self.exit(return_code=self.exit_code())
        elif self._quitting:
            self._still_stopping()
        else:
            self.push_screen(ConfirmQuit(running=True),
                             lambda yes: self.begin_quit() if yes else None)

    def action_leave(self) -> None:
        """`q` attached: detach (the default; the run goes on) or stop the run."""
        if self.run_over or self.read_only is not None:
            self.action_detach()       # nothing this cockpit could stop: just leave
        elif self._quitting:
            self.toast("The run finishes its batch, saves a checkpoint and stops; "
                       "d detaches now.", title="Stopping the run", timeout=4)
        else:
            self.push_screen(AttachQuit(), self._on_leave_answer)

    def _on_leave_answer(self, choice: str | None) -> None:
        if choice == "detach":
            self.action_detach()
        elif choice == "stop":
            self.stop_run()

    def stop_run(self) -> None:
        """Attached: ask the run to stop (it checkpoints first); leave once the file says it
        ended."""
        if self.run_over:
            self.action_detach()
            return
        self._quitting = True
        self.commands.stop()
        self.poll()

    def action_detach(self) -> None:
        self._leave("closed" if self.run_over else "detached")

    def _leave(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.exit(return_code=0)

    def action_quit_now(self) -> None:
        """Ctrl+C / Ctrl+Q in-process: a confirmed quit."""
        while len(self.screen_stack) > 1 and isinstance(self.screen,
                                                       ConfirmQuit | ConfirmSetting | HelpScreen):
            self.pop_screen()
        self.begin_quit()

    async def action_quit(self) -> None:
        self.begin_quit()

    def begin_quit(self) -> None:
        """A confirmed quit (`q` then y, Ctrl+C, SIGTERM, SIGHUP, Textual's quit). In-process:
        stop the run at a batch boundary (it checkpoints) and exit once it has. Attached:
        detach; the run goes on."""
        if self.link.attached:
            self.action_detach()
            return
        if self._quitting:
            self._still_stopping()
            return
        self._quitting = True
        if self.run_over:
            self.exit(return_code=self.exit_code())
            return
        self.commands.stop()
        if self._worker is None:
            # Nothing of ours to wait for (a run fed from elsewhere): the stop is sent, leave.
            self.exit(return_code=self.exit_code())
            return
        self.poll()

    def _still_stopping(self) -> None:
        self.toast("Waiting for the training loop to finish its batch and save a "
                   "checkpoint…", title="Stopping", timeout=4)
