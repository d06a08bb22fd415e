"""`luna-tui attach [RUN_DIR | latest]`: the cockpit on a run started elsewhere (`luna-tui
--headless` under nohup, tmux or a batch system).

The same ``CockpitApp`` (same panes, same layout), fed from the run's event file instead of an
in-process trainer, and sending commands to the run's control socket (luna_tui.link.remote:
``RunFileSource``, ``RemoteCommands``).

``AttachApp``: ``d`` detaches (the run goes on); ``q`` asks: detach (the default) or stop the
run (it checkpoints, then stops). Ctrl+C and a hang-up (SIGHUP, the SSH link dropped)
detach. A run that is over, on another host or without a control socket is read-only: p and
c say why instead of acting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

from textual.binding import Binding

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.compare import load_baseline
from luna_core.run.runs import CRASHED, on_this_host, resolve_run_dir
from luna_tui.app import Clock, CockpitApp
from luna_tui.link.remote import RemoteCommands, RunFileSource, open_run
from luna_tui.link.system_probe import RunProcessProbe, SystemReading
from luna_tui.messages import CommandFailed
from luna_tui.model.endings import ENDED_WORDS, attach_closing_line, resume_command
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.screens.confirm import AttachQuit
from luna_tui.screens.help import ATTACH_KEYS, HelpScreen
from luna_tui.terminal import terminal_problem
from luna_tui.views import VIEW_BINDINGS
from luna_tui.widgets.progress import UiStatus

__all__ = ["AttachApp", "RemoteCommands", "RunFileSource", "build_attach_app", "farewell",
           "open_run", "run_attach"]



class AttachApp(CockpitApp, inherit_bindings=False):
    """The cockpit on a run in another process: keys act on it through its control socket.

    Its own keys only (``inherit_bindings=False``); it extends CockpitApp through the public
    hooks ``show``, ``begin_quit``, ``request_stop`` and ``command_refused``."""

    TITLE = "LUNA cockpit (attached)"
    # in the footer's order: the cockpit's keys first, then d
    BINDINGS = [
        Binding("ctrl+q", "detach", "Detach", show=False, priority=True),
        Binding("ctrl+c", "detach", "Detach", show=False, priority=True),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("p", "read_only('pause or resume')", "Pause", show=False),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("c", "read_only('checkpoint')", "Checkpoint", show=False),
        *VIEW_BINDINGS,
        Binding("q", "request_quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("d", "detach", "Detach"),
    ]

    def __init__(self, source: RunFileSource, commands: RemoteCommands, *,
                 own_probe: bool = False, **kwargs: Any) -> None:
        super().__init__(source, commands, own_probe=own_probe, **kwargs)
        self.source: RunFileSource = source
        self.commands: RemoteCommands = commands
        self.read_only: str | None = None       # why p / c cannot act now, or None
        self.outcome: str | None = None         # "detached", "stopped" or "closed" at exit
        self._seen_end: bool | None = None

    # -- lifecycle (CockpitApp.on_mount / on_unmount run too, after these) ---------------

    def on_mount(self) -> None:
        self.commands.on_error = lambda command, error: self.post_message(
            CommandFailed(command, error))
        self.source.start()

    def on_unmount(self) -> None:
        self.source.close()
        self.commands.close()

    # -- polling ------------------------------------------------------------------------

    def read_only_reason(self, snap: RunSnapshot) -> str | None:
        if snap.ended:
            return ENDED_WORDS.get(snap.state, f"the run is {snap.state}")
        run = self.source.run
        if run is None:
            return "the run has not started"
        if not on_this_host(run.host):
            return f"the run is on host {run.host}; its control socket works only there"
        if not run.control_socket:
            return "the run has no control socket"
        if not os.path.exists(run.control_socket):
            return f"its control socket {run.control_socket} is gone"
        return None

    def show(self, snap: RunSnapshot) -> None:
        reason = self.read_only_reason(snap)
        changed = reason != self.read_only
        self.read_only = reason
        super().show(snap)
        if changed:
            self.refresh_bindings()
        self._announce_end(snap)
        if self.quitting and snap.ended:
            self._leave("stopped")

    def _announce_end(self, snap: RunSnapshot) -> None:
        if self._seen_end is None or snap.ended == self._seen_end:
            self._seen_end = snap.ended
            return
        self._seen_end = snap.ended
        if not snap.ended or self.quitting:
            return
        if snap.state == CRASHED:
            self.toast(f"{snap.state_detail}. Resume with: {resume_command(snap.run_dir)}",
                       title="Run ended unexpectedly", severity="error", timeout=30)
        elif snap.state in (ev.FINISHED, ev.STOPPED):
            self.toast(ENDED_WORDS[snap.state] + "; the cockpit is read-only now (q exits)",
                       title=f"Run {snap.state}", timeout=10)

    def ui_status(self) -> UiStatus:
        return dataclasses.replace(super().ui_status(), read_only=self.read_only,
                                   title="LUNA cockpit (attached)")

    def exit_code(self) -> int:
        return 0

    # -- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "read_only":
            return self.read_only is not None and not self.quitting
        if action in ("pause", "resume", "checkpoint") and self.read_only is not None:
            return False
        return super().check_action(action, parameters)

    def action_read_only(self, what: str) -> None:
        self.toast(f"Cannot {what}: {self.read_only}.", title="Read-only",
                   severity="warning", timeout=6)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(ATTACH_KEYS))

    def action_detach(self) -> None:
        self._leave("closed" if self.run_over else "detached")

    def action_request_quit(self) -> None:
        if self.run_over or self.read_only is not None:
            self.action_detach()       # nothing this cockpit could stop: just leave
            return
        if self.quitting:
            self.toast("The run finishes its batch, saves a checkpoint and stops; "
                       "d detaches now.", title="Stopping the run", timeout=4)
            return
        self.push_screen(AttachQuit(), self._on_leave_answer)

    def _on_leave_answer(self, choice: str | None) -> None:
        if choice == "detach":
            self.action_detach()
        elif choice == "stop":
            self.stop_run()

    def stop_run(self) -> None:
        """Ask the run to stop (it checkpoints first); leave once the file says it ended."""
        if self.run_over:
            self.action_detach()
            return
        self.request_stop()

    def begin_quit(self) -> None:
        # Ctrl+C, SIGTERM, SIGHUP (this SSH session dropped), Textual's quit: detach; the
        # run goes on
        self.action_detach()

    def _leave(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.exit(return_code=0)

    def on_command_failed(self, message: CommandFailed) -> None:
        self.command_refused(message.command)
        self.toast(f"'{message.command}' did not reach the run: {message.error}",
                   title="The run does not answer", severity="error", timeout=10)
        self.poll()


# --------------------------------------------------------------------------------------------
# Factory and entry point
# --------------------------------------------------------------------------------------------

def build_attach_app(run_dir: str, *, clock: Clock | None = None,
                     system_probe: Callable[[], SystemReading] | None = None,
                     **app_kwargs: Any) -> AttachApp:
    """The cockpit attached to the run in ``run_dir`` (history already read)."""
    source = open_run(run_dir)
    own_probe = system_probe is None
    probe = system_probe or RunProcessProbe(source.process)
    commands = RemoteCommands(source.control_socket)
    return AttachApp(source, commands, clock=clock, system_probe=probe, own_probe=own_probe,
                     **app_kwargs)


def build_parser():
    from luna_core.train.options import DEFAULT_RUNS_DIR

    parser = argparse.ArgumentParser(
        prog="luna-tui attach", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Open the cockpit on a run started with 'luna-tui --headless': its "
                    "history, then live. p pauses/resumes, c checkpoints, d detaches (the "
                    "run goes on), q asks: detach or stop the run.")
    parser.add_argument("run", nargs="?", default="latest", metavar="RUN_DIR|latest",
                        help="a run directory, or 'latest': the newest run under --runs-dir")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR,
                        help="where 'latest' looks for runs")
    parser.add_argument("--quiet", action="store_true",
                        help="no terminal bell or desktop notification")
    parser.add_argument("--baseline", default=None, metavar="RUN",
                        help="a run whose validation curves show beside this one's (b picks "
                             "one)")
    return parser


def farewell(app: AttachApp) -> str:
    """The line printed after the cockpit closes."""
    pid = app.source.run.pid if app.source.run else "?"
    return attach_closing_line(app.source.snapshot(), app.source.run_dir, pid)


def run_attach(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
        baseline = load_baseline(args.baseline, args.runs_dir)
        app = build_attach_app(run_dir, handle_signals=True, baseline=baseline,
                               runs_dir=args.runs_dir, quiet=args.quiet)
    except LunaInputError as exc:
        print(f"luna-tui attach: {exc}", file=sys.stderr)
        return 2
    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui attach: the cockpit needs an interactive terminal ({problem}); "
              f"'luna-tui runs' lists runs without one", file=sys.stderr)
        return 2
    try:
        app.run()
    finally:
        app.source.close()
        app.commands.close()
    print(f"luna-tui attach: {farewell(app)}", file=sys.stderr)
    return int(app.return_code or 0)
