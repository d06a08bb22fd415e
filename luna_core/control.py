"""The run's control socket: `luna-tui attach` sends commands to a running loop through it.

A Unix domain socket (never a TCP port), mode 0600, normally ``RUN_DIR/control.sock``. The
protocol is one JSON object per line each way: the client sends ``{"command": "pause"}``
(any luna_core.commands.Command value) and gets ``{"ok": true}`` or ``{"ok": false, "error":
...}``. The command's effect is acknowledged by the loop's own events (status, checkpoint),
which every attached cockpit sees in the event file. Any number of clients may connect.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable

from luna_core.commands import Command, CommandChannel, CommandMethods

SOCKET_NAME = "control.sock"
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, less elsewhere


def socket_path_for(run_dir: str) -> str:
    path = os.path.join(os.path.abspath(run_dir), SOCKET_NAME)
    if len(path.encode()) <= _MAX_UNIX_PATH:
        return path
    # A deep run directory: use a short per-user path; RunStarted records where it is.
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"luna-tui-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{digest}.sock")


class ControlServer:
    def __init__(self, path: str, commands: CommandChannel,
                 on_command: Callable[[Command], None] | None = None) -> None:
        self.path = path
        self.commands = commands
        self.on_command = on_command
        self._sock: socket.socket | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a run that died (the resumed run takes it over)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        threading.Thread(target=self._accept_loop, name="luna-control", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for raw in stream:
                try:
                    command = Command(json.loads(raw)["command"])
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                else:
                    self.commands.put(command)
                    if self.on_command is not None:
                        self.on_command(command)
                    reply = {"ok": True, "command": command.value}
                try:
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
                except OSError:
                    return


class ControlClient(CommandMethods):
    """Sends commands to a run; pause() ... stop() return the run's reply."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            self._sock = sock
            self._stream = sock.makefile("rwb")
        return self._sock

    def put(self, command: Command | str) -> dict:
        command = Command(command)
        with self._lock:
            try:
                self._connect()
                self._stream.write(json.dumps({"command": command.value}).encode() + b"\n")
                self._stream.flush()
                line = self._stream.readline()
            except OSError as exc:
                self.close()
                raise ConnectionError(f"{self.path}: the run does not answer ({exc})") from exc
        if not line:
            self.close()
            raise ConnectionError(f"{self.path}: the run closed the control socket")
        return json.loads(line)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._stream.close()
                self._sock.close()
            finally:
                self._sock = None
