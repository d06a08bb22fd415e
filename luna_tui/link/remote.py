"""A run in another process, for ``luna-tui attach``: its event file as the cockpit's
snapshot source (``RunFileSource``), its control socket as the cockpit's command sink
(``RemoteCommands``). No Textual here.

- ``RunFileSource`` reads ``RUN_DIR/events.jsonl`` into an ``EventCollector``: the history at
  once (before the first paint), then what the run appends, from a follower thread. On the
  run's own host it also watches the run's process; one that is gone without a final event
  (crash, SIGKILL, reboot: luna_core.run.runs.process_gone) is folded in as the ``crashed``
  state ("ended unexpectedly").
- ``RemoteCommands`` sends the commands (luna_core.run.command_table.COMMANDS) over the run's
  control socket from a sender thread, so a run that hangs cannot freeze the UI; a run that
  does not answer goes to ``on_error``, never raises. The run acknowledges every command
  with events (a log line, status, checkpoint) that every attached cockpit sees in the file.
- ``RemoteLink`` is the two as the cockpit's ``RunLink``, with the reason the run cannot be
  steered from here (read-only) when there is one.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable

from luna_core.run import events as ev
from luna_core.run.command_table import Command, CommandMethods, Setting
from luna_core.run.control_socket import ControlClient
from luna_core.run.eventfile import EVENT_FILE_NAME, EventFileFollower, run_event_file
from luna_core.run.runs import CRASHED, not_a_run, on_this_host, process_gone
from luna_tui.link import RunLink
from luna_tui.model.collector import EventCollector
from luna_tui.model.endings import ENDED_WORDS
from luna_tui.model.snapshot import RunSnapshot

#: How often the follower thread reads the event file, and checks the run's process.
FOLLOW_INTERVAL = 0.25
LIVENESS_INTERVAL = 1.0


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
            if (run is not None and not self._segment_ended
                    and time.monotonic() - self._last_liveness >= self.liveness_interval):
                self._last_liveness = time.monotonic()
                if process_gone(run):
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
        self._queue: queue.Queue[Command | Setting | None] = queue.Queue()
        self._client: ControlClient | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, command: Command | Setting | str) -> None:
        command = command if isinstance(command, Setting) else Command(command)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="luna-attach-commands")
                self._thread.start()
        self._queue.put(command)

    def send(self, command: Command | Setting) -> str | None:
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
# The link, and opening a run
# --------------------------------------------------------------------------------------------

class RemoteLink(RunLink):
    """A run in another process, reached through its event file and control socket."""

    attached = True
    title = "LUNA cockpit (attached)"

    def __init__(self, source: RunFileSource, commands: RemoteCommands) -> None:
        super().__init__(source, commands)
        self.source: RunFileSource = source
        self.commands: RemoteCommands = commands

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

    def start(self, on_command_failed: Callable[[str, str], None]) -> None:
        self.commands.on_error = on_command_failed
        self.source.start()

    def close(self) -> None:
        self.source.close()
        self.commands.close()


def open_run(run_dir: str) -> RunFileSource:
    """A source with the run's history folded in; LunaInputError when it is not a run."""
    path = run_event_file(run_dir)
    source = RunFileSource(run_dir)
    source.catch_up()
    if source.run is None:
        raise not_a_run(path)
    return source


def open_remote_link(run_dir: str) -> RemoteLink:
    """The link to the run in ``run_dir`` (history read); LunaInputError when not a run."""
    source = open_run(run_dir)
    return RemoteLink(source, RemoteCommands(source.control_socket))
