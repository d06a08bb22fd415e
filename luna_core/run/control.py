"""The run's control socket: `luna-tui attach` sends commands to a running loop through it.

A Unix domain socket (never a TCP port), mode 0600, normally ``RUN_DIR/control.sock``. The
protocol is one JSON object per line each way: the client sends ``{"command": "pause"}``
(any luna_core.run.commands.Command value) and gets ``{"ok": true, "command": "pause"}`` or
``{"ok": false, "error": ...}``. The command's effect is acknowledged by the loop's own events
(status, checkpoint), which every attached cockpit sees in the event file.

The server lives inside the training process, so no client may hurt it: request lines are
bounded, so is the number of clients at once (one more is told "too many clients" and closed),
and a connection that sends nothing for ``idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import tempfile
import threading
from collections.abc import Callable

from luna_core.run.commands import Command, CommandChannel, CommandMethods, Setting

SOCKET_NAME = "control.sock"
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, less elsewhere
MAX_LINE = 4096
MAX_CLIENTS = 16
IDLE_TIMEOUT = 30.0


def socket_path_for(run_dir: str) -> str:
    path = os.path.join(os.path.abspath(run_dir), SOCKET_NAME)
    if len(path.encode()) <= _MAX_UNIX_PATH:
        return path
    # A deep run directory: use a short per-user path; RunStarted records where it is.
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"luna-tui-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{digest}.sock")


def _line(reply: dict) -> bytes:
    return json.dumps(reply).encode() + b"\n"


class ControlServer:
    """One thread per connection, at most ``max_clients`` of them; close() ends them all."""

    def __init__(self, path: str, commands: CommandChannel,
                 on_command: Callable[[Command], None] | None = None, *,
                 max_clients: int = MAX_CLIENTS, idle_timeout: float = IDLE_TIMEOUT,
                 max_line: int = MAX_LINE) -> None:
        self.path = path
        self.commands = commands
        self.on_command = on_command
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.max_line = max_line
        self._sock: socket.socket | None = None
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(max_clients)
        self._lock = threading.Lock()
        self._serving: dict[socket.socket, threading.Thread] = {}

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a run that died (the resumed run takes it over)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        sock.settimeout(0.5)  # accept() wakes to see close(): closing the socket does not wake it
        self._sock = sock
        threading.Thread(target=self._accept_loop, name="luna-control", daemon=True).start()

    def close(self) -> None:
        """Stops accepting, then ends every connection and waits for its thread, so that no
        command reaches the channel after close() returns."""
        self._closed.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass
        with self._lock:  # held, so that no connection is closed (its fd reused) meanwhile
            threads = list(self._serving.values())
            for conn in self._serving:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes its thread's recv() or sendall()
                except OSError:
                    pass
        for thread in threads:
            if thread is not threading.current_thread():  # close() from on_command
                thread.join(timeout=5.0)

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
            if not self._slots.acquire(blocking=False):
                self._refuse(conn)
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name="luna-control-client")
            with self._lock:
                if self._closed.is_set():  # close() has already taken its list
                    conn.close()
                    self._slots.release()
                    return
                self._serving[conn] = thread
                thread.start()

    def _refuse(self, conn: socket.socket) -> None:
        # Answered and closed at once, so that the client knows why instead of waiting in the
        # backlog; non-blocking, because this thread must never wait on a client.
        with conn:
            conn.setblocking(False)
            try:
                conn.send(_line({"ok": False, "error": f"too many clients (at most "
                                 f"{self.max_clients} at once); try again later"}))
            except OSError:
                pass

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.idle_timeout)  # bounds every recv() and sendall()
            self._converse(conn)
        except OSError:
            pass  # gone (reset, broken pipe), idle too long, or close(): nobody to tell
        finally:
            with self._lock:
                del self._serving[conn]
            self._slots.release()  # before close(): a client that sees it closed may reconnect
            conn.close()

    def _converse(self, conn: socket.socket) -> None:
        pending = b""  # never more than max_line + 1 bytes: recv() asks for no more
        while True:
            end = pending.find(b"\n")
            if end >= 0:
                line, pending = pending[:end], pending[end + 1:]
                conn.sendall(_line(self._handle(line)))
            elif len(pending) > self.max_line:
                conn.sendall(_line({"ok": False, "error":
                                    f"request line longer than {self.max_line} bytes"}))
                return  # the rest of the line cannot be told from a next request
            else:
                chunk = conn.recv(self.max_line + 1 - len(pending))
                if not chunk:
                    return
                pending += chunk

    def _handle(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            if request["command"] == Setting.value:
                command = Setting(_number(request.get("lr")), _number(request.get("momentum")),
                                  source="control socket")
                command.check()
            else:
                command = Command(request["command"])
        # RecursionError: deeply nested JSON ("[[[[..."), which fits well within max_line
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        self.commands.put(command)
        if self.on_command is not None:
            self.on_command(command)
        return {"ok": True, "command": command.value}


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


class ControlClient(CommandMethods):
    """Sends commands to a run; pause() ... stop() return the run's reply."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        # Readable between requests means the run closed the connection (idle too long): a
        # new one, rather than an error for a command that was never sent.
        if self._sock is not None:
            poll = select.poll()  # not select(): it fails on descriptors above 1023
            poll.register(self._sock, select.POLLIN)
            if poll.poll(0):
                self.close()
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            self._sock = sock
            self._stream = sock.makefile("rwb")
        return self._sock

    def put(self, command: Command | Setting | str) -> dict:
        if isinstance(command, Setting):
            return self.request("set", lr=command.lr, momentum=command.momentum)
        return self.request(Command(command).value)

    def request(self, command: str, **fields) -> dict:
        """Send any command word (and its fields); the run's reply says whether it takes it."""
        with self._lock:
            try:
                self._connect()
                self._stream.write(json.dumps({"command": command, **{
                    k: v for k, v in fields.items() if v is not None}}).encode() + b"\n")
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
