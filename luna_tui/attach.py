"""`luna-tui attach [RUN_DIR | latest]`: the cockpit on a run started elsewhere (`luna-tui
--headless` under nohup, tmux or a batch system).

The same ``CockpitApp`` (same panes, same layout), fed from the run's event file instead of an
in-process trainer:

- ``RunFileSource`` reads ``RUN_DIR/events.jsonl`` into an ``EventCollector``: the history at
  once (before the first paint), then what the run appends, from a follower thread. On the
  run's own host it also watches the run's process; one that is gone without a final event
  (crash, SIGKILL, reboot) is folded in as the ``crashed`` state ("ended unexpectedly").
- ``RemoteCommands`` sends p / c / stop over the run's control socket from a sender thread,
  so a run that hangs cannot freeze the UI; a run that does not answer becomes a
  notification, never a crash. The run acknowledges every command with events (a log line,
  status, checkpoint) that every attached cockpit sees in the file.
- ``AttachApp``: ``d`` detaches (the run goes on); ``q`` asks: detach (the default) or stop the
  run (it checkpoints, then stops). Ctrl+C and a hang-up (SIGHUP, the SSH link dropped)
  detach. A run that is over, on another host or without a control socket is read-only:
  p and c say why instead of acting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from textual.binding import Binding

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.commands import Command, CommandMethods
from luna_core.run.control import ControlClient
from luna_core.run.eventfile import EVENT_FILE_NAME, EventFileFollower
from luna_core.run.runs import CRASHED, process_alive, resolve_run_dir
from luna_tui.app import Clock, CockpitApp, terminal_problem
from luna_tui.collector import EventCollector, RunSnapshot
from luna_tui.confirm import AttachQuit
from luna_tui.help import ATTACH_KEYS, HelpScreen
from luna_tui.messages import CommandFailed
from luna_tui.system_probe import RunProcessProbe, SystemReading, this_host
from luna_tui.widgets.progress import UiStatus, resume_command

#: How often the follower thread reads the event file, and checks the run's process.
FOLLOW_INTERVAL = 0.25
LIVENESS_INTERVAL = 1.0

ENDED_WORDS = {
    ev.FINISHED: "the run has finished",
    ev.STOPPED: "the run was stopped",
    ev.FAILED: "the run failed",
    CRASHED: "the run ended unexpectedly",
}


# --------------------------------------------------------------------------------------------
# The run's process
# --------------------------------------------------------------------------------------------

def on_this_host(run: ev.RunStarted) -> bool:
    return not run.host or run.host == this_host()


# --------------------------------------------------------------------------------------------
# The event file as a snapshot source
# --------------------------------------------------------------------------------------------

class RunFileSource:
    """A run's event file, folded into an ``EventCollector`` (the cockpit's ``source``).

    ``catch_up()`` reads what the file has now; ``start()`` keeps doing so on a thread until
    ``close()``. On the run's own host, a process that is gone without a final event is
    folded in as ``RunFinished(state="crashed")``."""

    def __init__(self, run_dir: str, *, interval: float = FOLLOW_INTERVAL,
                 liveness_interval: float = LIVENESS_INTERVAL,
                 collector: EventCollector | None = None) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, EVENT_FILE_NAME)
        self.collector = collector or EventCollector()
        self.interval = interval
        self.liveness_interval = liveness_interval
        self.run: ev.RunStarted | None = None    # the latest process of the run
        self.crashed = False
        self._follower = EventFileFollower(self.path)
        self._segment_ended = False               # the latest process sent run_finished
        self._last_liveness = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- SnapshotSource -----------------------------------------------------------------

    def snapshot(self) -> RunSnapshot:
        return self.collector.snapshot()

    # -- what the run is now ------------------------------------------------------------

    def process(self) -> tuple[int | None, str]:
        run = self.run
        return (None, "") if run is None else (run.pid, run.host)

    def control_socket(self) -> str | None:
        run = self.run
        return None if run is None else run.control_socket

    # -- reading ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Fold in what the file has now; returns how many events."""
        with self._lock:
            count = self._read()
            run = self.run
            if (run is not None and not self._segment_ended and on_this_host(run)
                    and time.monotonic() - self._last_liveness >= self.liveness_interval):
                self._last_liveness = time.monotonic()
                if not process_alive(run.pid, run.t):
                    count += self._read()   # it may have written its last line, then exited
                    if not self._segment_ended:
                        self._fold_crash(run)
                        count += 1
            return count

    def _read(self) -> int:
        errors: list[str] = []
        events = self._follower.poll(errors)
        for error in errors:
            self.collector(ev.LogRecord(level="ERROR", message=f"event file: {error}"))
        for event in events:
            if isinstance(event, ev.RunStarted):
                self.run, self._segment_ended, self.crashed = event, False, False
            elif isinstance(event, ev.RunFinished):
                self._segment_ended = True
            self.collector(event)
        return len(events) + len(errors)

    def _fold_crash(self, run: ev.RunStarted) -> None:
        snap = self.collector.snapshot()
        last = snap.last_checkpoint.path if snap.last_checkpoint else None
        where = f" on {run.host}" if run.host else ""
        detail = (f"process {run.pid}{where} is gone without a final event "
                  f"(crash, SIGKILL or reboot)")
        self.collector(ev.RunFinished(state=CRASHED, exit_code=1, last_checkpoint=last))
        self.collector(ev.StatusChanged(state=CRASHED, detail=detail))
        self.collector(ev.LogRecord(level="ERROR", message=f"run ended unexpectedly: {detail}"))
        self._segment_ended = True
        self.crashed = True

    # -- the follower thread ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="luna-attach-follow",
                                            daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        failed = False
        while not self._stop.wait(self.interval):
            try:
                self.catch_up()
                failed = False
            except Exception as exc:  # noqa: BLE001 - say so once, keep following
                if not failed:
                    self.collector(ev.LogRecord(level="ERROR",
                                                message=f"reading {self.path}: {exc!r}"))
                failed = True

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)


# --------------------------------------------------------------------------------------------
# Commands over the control socket
# --------------------------------------------------------------------------------------------

class RemoteCommands(CommandMethods):
    """The cockpit's ``commands``, sent to the run's control socket in order from a sender
    thread. A command the run does not take goes to ``on_error(command, message)``."""

    def __init__(self, socket_path: Callable[[], str | None], *,
                 on_error: Callable[[str, str], None] | None = None,
                 timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.on_error = on_error
        self.timeout = timeout
        self.sent: list[tuple[str, bool]] = []    # (command, delivered), for tests and logs
        self._queue: queue.Queue[Command | None] = queue.Queue()
        self._client: ControlClient | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, command: Command | str) -> None:
        command = Command(command)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="luna-attach-commands")
                self._thread.start()
        self._queue.put(command)

    def send(self, command: Command) -> str | None:
        """Deliver one command now (in this thread); returns an error message or None."""
        path = self.socket_path()
        if not path:
            return "the run has no control socket"
        error = ""
        for _ in range(2):     # a stale connection (the run was resumed) gets one retry
            if self._client is None or self._client.path != path:
                if self._client is not None:
                    self._client.close()
                self._client = ControlClient(path, timeout=self.timeout)
            try:
                reply = self._client.put(command)
            except (ConnectionError, OSError) as exc:
                self._client.close()
                self._client = None
                error = str(exc)
                continue
            if reply.get("ok"):
                return None
            return str(reply.get("error") or "refused")
        return error

    def _send_loop(self) -> None:
        while True:
            command = self._queue.get()
            if command is None:
                break
            error = self.send(command)
            self.sent.append((command.value, error is None))
            if error is not None and self.on_error is not None:
                try:
                    self.on_error(command.value, error)
                except Exception:  # noqa: BLE001 - the app is gone
                    pass
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self._queue.put(None)


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------

class AttachApp(CockpitApp):
    """The cockpit on a run in another process: keys act on it through its control socket."""

    TITLE = "LUNA cockpit (attached)"
    _inherit_bindings = False
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("p", "read_only('pause or resume')", "Pause", show=False),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("c", "read_only('checkpoint')", "Checkpoint", show=False),
        Binding("d", "detach", "Detach"),
        Binding("l", "focus_log", "Log"),
        Binding("q", "request_quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+c", "detach", "Detach", show=False, priority=True),
        Binding("ctrl+q", "detach", "Detach", show=False, priority=True),
    ]

    def __init__(self, source: RunFileSource, commands: RemoteCommands, *,
                 own_probe: bool = False, **kwargs: Any) -> None:
        super().__init__(source, commands, **kwargs)
        self.source: RunFileSource = source
        self.commands: RemoteCommands = commands
        self._own_probe = own_probe
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
        if not on_this_host(run):
            return f"the run is on host {run.host}; its control socket works only there"
        if not run.control_socket:
            return "the run has no control socket"
        if not os.path.exists(run.control_socket):
            return f"its control socket {run.control_socket} is gone"
        return None

    def _poll(self) -> None:
        snap = self.source.snapshot()
        reason = self.read_only_reason(snap)
        changed = reason != self.read_only
        self.read_only = reason
        super()._poll()
        if changed:
            self.refresh_bindings()
        self._announce_end(self.snap)
        if self._quitting and self.snap.ended:
            self._leave("stopped")

    def _announce_end(self, snap: RunSnapshot) -> None:
        if self._seen_end is None or snap.ended == self._seen_end:
            self._seen_end = snap.ended
            return
        self._seen_end = snap.ended
        if not snap.ended or self._quitting:
            return
        if snap.state == CRASHED:
            self.notify(f"{snap.state_detail}. Resume with: {resume_command(snap.run_dir)}",
                        title="Run ended unexpectedly", severity="error", timeout=30)
        elif snap.state in (ev.FINISHED, ev.STOPPED):
            self.notify(ENDED_WORDS[snap.state] + "; the cockpit is read-only now (q exits)",
                        title=f"Run {snap.state}", timeout=10)

    def ui_status(self) -> UiStatus:
        return dataclasses.replace(super().ui_status(), read_only=self.read_only,
                                   title="LUNA cockpit (attached)")

    def exit_code(self) -> int:
        return 0

    # -- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "read_only":
            return self.read_only is not None and not self._quitting
        if action in ("pause", "resume", "checkpoint") and self.read_only is not None:
            return False
        return super().check_action(action, parameters)

    def action_read_only(self, what: str) -> None:
        self.notify(f"Cannot {what}: {self.read_only}.", title="Read-only",
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
        if self._quitting:
            self.notify("The run finishes its batch, saves a checkpoint and stops; "
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
        self._quitting = True
        self.commands.stop()
        self.poll()

    def _begin_quit(self) -> None:
        # Ctrl+C, SIGTERM, SIGHUP (this SSH session dropped): detach; the run goes on
        self.action_detach()

    async def action_quit(self) -> None:
        self.action_detach()

    def _leave(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.exit(return_code=0)

    def on_command_failed(self, message: CommandFailed) -> None:
        if message.command == "stop":
            self._quitting = False
        if self._request is not None:
            self._request = None
        self.notify(f"'{message.command}' did not reach the run: {message.error}",
                    title="The run does not answer", severity="error", timeout=10)
        self.poll()


# --------------------------------------------------------------------------------------------
# Factory and entry point
# --------------------------------------------------------------------------------------------

def open_run(run_dir: str) -> RunFileSource:
    """A source with the run's history folded in; LunaInputError when it is not a run."""
    if not os.path.isdir(run_dir):
        raise LunaInputError("no such run directory", run_dir)
    path = os.path.join(run_dir, EVENT_FILE_NAME)
    if not os.path.isfile(path):
        raise LunaInputError("no event file here: not a luna-tui run directory", path)
    source = RunFileSource(run_dir)
    source.catch_up()
    if source.run is None:
        raise LunaInputError("no run_started event: not a luna-tui run", path)
    return source


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
    return parser


def farewell(app: AttachApp) -> str:
    """The line printed after the cockpit closes."""
    snap = app.source.snapshot()
    run_dir = app.source.run_dir
    last = snap.last_checkpoint.path if snap.last_checkpoint else None
    if snap.state == CRASHED:
        if last:
            return (f"run ended unexpectedly; last checkpoint {last}; resume with: "
                    f"{resume_command(run_dir)}")
        return "run ended unexpectedly, before its first checkpoint"
    if snap.ended:
        return f"run {snap.state}" + (f"; last checkpoint {last}" if last else "")
    pid = app.source.run.pid if app.source.run else "?"
    return (f"detached; the run goes on (pid {pid}). Come back with: "
            f"luna-tui attach {run_dir}")


def run_attach(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
        app = build_attach_app(run_dir, handle_signals=True)
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
