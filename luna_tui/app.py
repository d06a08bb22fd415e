"""The training cockpit: one Textual app over a ``RunLink`` (luna_tui.link).

The link says where the run lives: in this process (``LocalLink``: the app runs the trainer in
a thread worker) or in another (``RemoteLink``, `luna-tui attach`; it may be read-only). The
app is a few parts put together: the cockpit screen lays out the panes (luna_tui.screens);
``Steering`` says which keys act (luna_tui.model.steering, from the commands' table,
luna_core.run.command_table.COMMANDS); the ``Notifier`` turns what is new into notifications;
``Leaving`` is every way out (luna_tui.leaving). The app polls the link's snapshot a few times
a second and hands it to them.

The trainer thread never touches widgets or the app's state: it only feeds the collector, and
its worker returns a ``TrainerResult`` that the app reads when the worker's state changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from luna_core.run.command_table import Command, command_spec
from luna_core.run.failure import describe_exception
from luna_tui.leaving import DETACH_KEY, QUIT_KEYS, Leaving
from luna_tui.link import RunLink
from luna_tui.link.local import TrainerResult
from luna_tui.link.system_probe import SystemProbe, SystemReading
from luna_tui.messages import CheckpointArrived, CommandFailed, RunEnded
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.steering import Steering
from luna_tui.notify import Notifier
from luna_tui.screens.cockpit import CockpitScreen
from luna_tui.screens.confirm import ConfirmSetting
from luna_tui.screens.help import HelpScreen, key_rows, sections_for
from luna_tui.terminal import Installed, install_quit_signals, remove_signals

Clock = Callable[[], datetime]


def local_now() -> datetime:
    return datetime.now().astimezone()


class CockpitApp(App[int]):
    """Shows a run and steers it over ``link`` (the keys are the screen's, the actions here)."""

    CSS_PATH = Path(__file__).with_name("cockpit.tcss")
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None          # no pane looks selected until Tab, l or a click picks one
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [*QUIT_KEYS,
                Binding("question_mark", "help", "Help", key_display="?",
                        tooltip="this help; Esc closes it"),
                DETACH_KEY]

    def __init__(self, link: RunLink, *, clock: Clock | None = None,
                 system_probe: Callable[[], SystemReading] | None = None,
                 poll_interval: float = 1 / 3, system_interval: float = 1.0,
                 plot_interval: float = 1.0, handle_signals: bool = False,
                 own_probe: bool | None = None, baseline=None,
                 runs_dir: str | None = None, quiet: bool = False,
                 preflight: Callable[[], str] | None = None, image_class=None) -> None:
        super().__init__()
        self.link = link
        self.title = link.title
        self.clock: Clock = clock or local_now
        # the probe is closed with the app when the app made it (or, own_probe, was given it)
        self.own_probe = system_probe is None if own_probe is None else own_probe
        self.system_probe = system_probe or SystemProbe()
        self.poll_interval, self.system_interval = poll_interval, system_interval
        self.handle_signals = handle_signals
        self.cockpit = CockpitScreen(clock=self.clock, plot_interval=plot_interval,
                                     baseline=baseline, runs_dir=runs_dir, preflight=preflight,
                                     image_class=image_class,
                                     run_dir_here=getattr(link.source, "run_dir", None))
        self.controls = Steering(link.attached)
        self.notifier = Notifier(self, quiet)
        self.leaving = Leaving(self, link, self.controls)
        self.snap: RunSnapshot = RunSnapshot()
        self.failure = self.failure_traceback = None   # the trainer raised: what, where; trace
        self.trainer_exit_code: int | None = None  # set when the in-process trainer returned
        self._worker: Worker[TrainerResult] | None = None
        self._seen_version = -1
        self._summary_shown: tuple[str, ...] = ()
        self._bindings_key: tuple | None = None
        self._signals: Installed = []              # the signal handlers on the loop

    @property
    def source(self):
        """The link's snapshot source (an EventCollector, or a RunFileSource)."""
        return self.link.source

    commands = property(lambda self: self.link.commands)

    def get_default_screen(self) -> CockpitScreen:
        return self.cockpit

    def on_mount(self) -> None:
        self.link.start(lambda command, error: self.post_message(CommandFailed(command, error)))
        # first fill once the layout is known, so every pane renders at its real width
        self.call_after_refresh(self.poll_system)
        self.call_after_refresh(self.poll)
        self.set_interval(self.poll_interval, self.poll, name="poll-snapshot")
        self.set_interval(self.system_interval, self.poll_system, name="poll-system")
        trainer = self.link.trainer
        if trainer is not None:
            self._worker = self.run_worker(trainer.run, name="trainer", group="trainer",
                                           thread=True, exit_on_error=False)
        if self.handle_signals:
            # SIGTERM, SIGHUP (the SSH link dropped) and a SIGINT from kill (Ctrl+C in the
            # cockpit is a key, not a signal): a confirmed quit, or a detach when attached
            install_quit_signals(self._signals, on_quit=self.leaving.confirmed,
                                 on_hangup=self.leaving.hang_up)

    def on_unmount(self) -> None:
        # Whatever ended the app, never leave an in-process training loop running on its own.
        if self.trainer_running:
            self.commands.stop()
        self.link.close()
        if self.own_probe and hasattr(self.system_probe, "close"):
            self.system_probe.close()
        remove_signals(self._signals)

    # -- the trainer thread ------------------------------------------------------------

    @property
    def trainer_started(self) -> bool:
        return self._worker is not None

    @property
    def trainer_running(self) -> bool:
        """The in-process trainer thread was started and has not returned yet."""
        return self.trainer_started and not self.link.trainer.done

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
        if self.controls.quitting:
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
        if self.trainer_started:
            return self.trainer_exit_code is not None
        return self.snap.ended

    # -- polling -----------------------------------------------------------------------

    def poll(self) -> None:
        try:
            self.show(self.link.snapshot())
        except NoMatches:      # a timer that fires while the app shuts down
            pass

    def show(self, snap: RunSnapshot) -> None:
        if snap.ended and not self.snap.ended:
            self.leaving.run_ended()
        self.snap = snap
        controls = self.controls
        controls.read_only = self.link.read_only_reason(snap)
        paused_at = controls.settle(snap)
        if paused_at:
            self.toast(paused_at, title="Paused", timeout=4)
        new_events = snap.version != self._seen_version
        if new_events:
            self._seen_version = snap.version
            for ck in self.notifier.announce(snap, failure=self.failure, attached_end=(
                    self.link.attached and not controls.quitting)):
                self.post_message(CheckpointArrived(ck.path, ck.reason))
        key = controls.key(snap, self.run_over)
        ui = controls.ui_status(self.run_over, self.failure, self.link.title)
        self.cockpit.show(snap, ui, new_events=new_events,
                          relayout=new_events or key != self._bindings_key)
        if snap.summary and snap.summary != self._summary_shown:
            self._summary_shown = snap.summary        # the run has ended: how it went
            self.cockpit.add_log_lines("\n".join(snap.summary), "INFO",
                                       t=snap.finished.t if snap.finished else None)
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()
        if self.link.attached and controls.quitting and snap.ended:
            self.leaving.leave("stopped")

    def poll_system(self) -> None:
        try:
            reading = self.system_probe()
        except Exception:  # noqa: BLE001 - a probe failure must not take the cockpit down
            reading = SystemReading(gpu_note="system readings unavailable")
        with contextlib.suppress(NoMatches):      # shutting down
            self.cockpit.show_reading(reading)

    def toast(self, message: str, **kwargs) -> None:
        """A notification (luna_tui.notify: at most two on screen)."""
        self.notifier.toast(message, **kwargs)

    def terminal_write(self, data: str) -> None:
        """Straight to the terminal, in order with Textual's output (as ``App.bell`` does)."""
        if not self.is_headless and self._driver is not None:
            self._driver.write(data)

    def on_checkpoint_arrived(self, message: CheckpointArrived) -> None:
        if self.controls.request == "checkpoint":
            self.controls.request = None
        self.notifier.checkpoint_saved(message.path, message.reason, self.snap.run_dir)

    def on_command_failed(self, message: CommandFailed) -> None:
        """A command did not reach the run: forget the request that waits on it (a refused
        stop ends the quitting)."""
        if message.command == Command.STOP.value:
            self.controls.quitting = False
        self.controls.request = None
        self.toast(f"'{message.command}' did not reach the run: {message.error}",
                   title="The run does not answer", severity="error", timeout=10)
        self.poll()

    # -- the keys ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.controls.allowed(action, parameters, self.snap, self.run_over)

    def action_command(self, name: str, argument: float | None = None) -> None:
        """A key that steers the run (luna_core.run.command_table.COMMANDS): on a read-only link it
        says why; the lr's keys ask first; any other sends its command."""
        spec = command_spec(name)
        if self.controls.refuses(spec):
            self.toast(spec.refusal(self.controls.read_only), title="Read-only",
                       severity="warning", timeout=6)
        elif spec.takes_values:                 # set: [ and ] halve and double the lr
            self._steer_lr(argument)
        else:
            if spec.notice is not None:
                title, text = spec.notice
                self.toast(text, title=title, timeout=4)
            self.commands.put(Command(name))
            if spec.request is not None:            # said until the run acts on it
                self.controls.request = name
            self.poll()

    def _steer_lr(self, factor: float) -> None:
        """`[` halves, `]` doubles the learning rate, once confirmed."""
        if self.snap.lr is None:
            self.toast("The run has not said its learning rate yet.", title="lr", timeout=4)
        else:
            ConfirmSetting.ask(self, self.snap.lr, self.snap.lr * factor, self.snap.momentum,
                               send=lambda lr: self.commands.set(lr=lr, source="cockpit"))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            bindings = [*self.cockpit.BINDINGS, *self.BINDINGS]
            self.push_screen(HelpScreen(key_rows(
                b for b in bindings
                if self.controls.applies(b.action.removeprefix("app.").split("(")[0])),
                sections_for(self.snap.task)))

    def action_request_quit(self) -> None:
        self.leaving.ask()

    action_leave = action_request_quit          # q when attached: detach or stop

    def action_detach(self) -> None:
        self.leaving.detach()

    def action_quit_now(self) -> None:
        self.leaving.now()

    async def action_quit(self) -> None:
        self.leaving.confirmed()
