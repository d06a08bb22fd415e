"""How the cockpit leaves, in one place. In-process (a LocalLink): `q` asks, then the run
stops at a batch boundary (it checkpoints) and the cockpit exits once the trainer has returned;
Ctrl+C, SIGTERM and SIGHUP are a confirmed `q`. Attached (a RemoteLink): `q` asks whether to
detach (the default; the run goes on) or stop the run; `d`, Ctrl+C, SIGTERM and SIGHUP
detach. After a hang-up the terminal is gone: the standard streams go to /dev/null, and the
process ends itself if Textual cannot close on a dead terminal."""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol

from textual.binding import Binding
from textual.screen import Screen

from luna_tui.link import RunLink
from luna_tui.model.steering import Steering
from luna_tui.screens.confirm import AttachQuit, ConfirmQuit, ConfirmSetting
from luna_tui.screens.help import HelpScreen
from luna_tui.terminal import stdio_to_devnull_for_good

#: The keys out: each kind of link has its own q and Ctrl+C (Steering.applies).
QUIT_KEYS = [
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
]
DETACH_KEY = Binding("d", "detach", "Detach",
                     tooltip="detach now: the run goes on (luna-tui attach RUN_DIR to come "
                             "back)")

#: After a hang-up, how long the app may take to close on its own once nothing is left to
#: save, before the process ends itself (Textual can block restoring a terminal that is gone).
HANGUP_GRACE_S = 5.0


class LeavingHost(Protocol):
    """What Leaving needs of the app besides the link and the steering: its screens, its
    end, and whether the run is over."""

    run_over: bool
    trainer_started: bool
    screen: Screen
    screen_stack: list[Screen]

    def push_screen(self, screen: Screen, callback=None): ...

    def pop_screen(self): ...

    def exit(self, result=None, return_code: int = 0, message=None) -> None: ...

    def exit_code(self) -> int: ...

    def poll(self) -> None: ...

    def toast(self, message: str, **kwargs) -> None: ...

    def set_timer(self, delay: float, callback=None, **kwargs): ...


class Leaving:
    """The app's ways out. ``outcome`` (attached): "detached", "stopped" or "closed"."""

    #: Seconds after the run ends that the cockpit closes by itself (None: it stays until
    #: left): `luna-tui demo` sets it, so that the next run's cockpit follows.
    after_run_s: float | None = None
    left_by_itself = False

    def __init__(self, app: LeavingHost, link: RunLink, controls: Steering) -> None:
        self.app, self.link, self._controls = app, link, controls
        self.outcome: str | None = None
        self.hung_up = False

    def run_ended(self) -> None:
        if self.after_run_s is not None:
            self.app.set_timer(self.after_run_s, self._by_itself)

    def _by_itself(self) -> None:
        self.left_by_itself = True
        self.leave("closed")

    def ask(self) -> None:
        """`q`: in-process, confirm a stop; attached, detach or stop the run."""
        app = self.app
        if self.link.attached:
            if app.run_over or self._controls.read_only is not None:
                self.detach()          # nothing this cockpit could stop: just leave
            elif self._controls.quitting:
                app.toast("The run finishes its batch, saves a checkpoint and stops; "
                          "d detaches now.", title="Stopping the run", timeout=4)
            else:
                app.push_screen(AttachQuit(), self._attached_answer)
        elif app.run_over:
            app.exit(return_code=app.exit_code())
        elif app.snap.ended:
            # the run has ended and its trainer is closing its files: nothing to stop, so
            # no dialog; the app leaves when the trainer returns (on_run_ended)
            self._controls.quitting = True
        elif self._controls.quitting:
            self._still_stopping()
        else:
            app.push_screen(ConfirmQuit(running=True),
                            lambda yes: self.confirmed() if yes else None)

    def _attached_answer(self, choice: str | None) -> None:
        if choice == "detach":
            self.detach()
        elif choice == "stop":
            self.stop_run()

    def now(self) -> None:
        """Ctrl+C: leave without asking (dialogs closed first)."""
        app = self.app
        while len(app.screen_stack) > 1 and isinstance(
                app.screen, ConfirmQuit | ConfirmSetting | HelpScreen):
            app.pop_screen()
        self.confirmed()

    def confirmed(self) -> None:
        """A confirmed quit (`q` then y, Ctrl+C, SIGTERM, SIGHUP, Textual's quit). In-process:
        stop the run at a batch boundary (it checkpoints) and exit once it has. Attached:
        detach; the run goes on."""
        app = self.app
        if self.link.attached:
            self.detach()
            return
        if self._controls.quitting:
            self._still_stopping()
            return
        self._controls.quitting = True
        if app.run_over:
            app.exit(return_code=app.exit_code())
            return
        self.link.commands.stop()
        if not app.trainer_started:
            # Nothing of ours to wait for (a run fed from elsewhere): the stop is sent, leave.
            app.exit(return_code=app.exit_code())
            return
        app.poll()

    def stop_run(self) -> None:
        """Attached: ask the run to stop (it checkpoints first); leave once it has ended."""
        if self.app.run_over:
            self.detach()
            return
        self._controls.quitting = True
        self.link.commands.stop()
        self.app.poll()

    def detach(self) -> None:
        self.leave("closed" if self.app.run_over else "detached")

    def leave(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.app.exit(return_code=0)

    def _still_stopping(self) -> None:
        self.app.toast("Waiting for the training loop to finish its batch and save a "
                       "checkpoint…", title="Stopping", timeout=4)

    def hang_up(self) -> None:
        """SIGHUP: the terminal is gone. A confirmed quit, with the standard streams on
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
        self.confirmed()

    def _exit_after_hangup(self) -> None:
        # the trainer's result straight from its thread: the UI loop may hang
        trainer = self.link.trainer
        result = None if trainer is None else trainer.wait()
        time.sleep(HANGUP_GRACE_S)
        os._exit(self.app.exit_code() if result is None else result.exit_code)
