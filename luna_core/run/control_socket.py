"""The run's control socket: `luna-tui attach` sends commands to a running loop through it.

A Unix domain socket (never a TCP port), mode 0600, normally ``RUN_DIR/control.sock``. The
protocol is one JSON object per line each way: the client sends ``{"command": "pause"}``
(any word of luna_core.run.command_table.COMMANDS; ``set`` with ``lr`` and/or ``momentum``) and
gets ``{"ok": true, "command": "pause"}`` or ``{"ok": false, "error": ...}``. The command's
effect is acknowledged by the loop's own events (status, checkpoint), which every attached
cockpit sees in the event file.

The server lives inside the training process, so no client may hurt it: request lines are
bounded, a connection that sends nothing for ``idle_timeout`` seconds is closed, and so is the
number of connections at once. When the table is full, a new client is still served: the
connection idle the longest (leaked by a script, left by a crashed cockpit) is told why in one
line and closed to make room. Only when every connection is in the middle of a command is the
new one told "too many clients" and closed.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from luna_core.run.command_table import Command, CommandChannel, CommandMethods, Setting

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


@dataclass
class _Connection:
    """One client's connection as the server sees it: when it last sent or was answered, and
    whether a command of it is being handled now (such a one is never closed for room)."""

    thread: threading.Thread
    last_active: float
    handling: bool = False
    send_lock: threading.Lock = field(default_factory=threading.Lock)


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
        self._serving: dict[socket.socket, _Connection] = {}

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a run that died (the resumed run takes it over)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(128)
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
            threads = [c.thread for c in self._serving.values()]
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
            if not self._slots.acquire(blocking=False) and not self._make_room():
                self._refuse(conn)
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name="luna-control-client")
            with self._lock:
                if self._closed.is_set():  # close() has already taken its list
                    conn.close()
                    self._slots.release()
                    return
                self._serving[conn] = _Connection(thread, time.monotonic())
                thread.start()

    def _make_room(self) -> bool:
        """The table is full: close the connection idle the longest, telling it why, and take
        its slot once its thread has let go of it. False if every one is handling a command."""
        with self._lock:
            idle = [(c.last_active, conn) for conn, c in self._serving.items() if not c.handling]
            if not idle:
                return False
            since, conn = min(idle, key=lambda pair: pair[0])
            record = self._serving[conn]
            if record.send_lock.acquire(blocking=False):  # not while a reply is half sent
                try:
                    conn.send(_line({"ok": False, "error": (
                        f"closed: idle for {time.monotonic() - since:.0f} s and all "
                        f"{self.max_clients} connections are taken; a new client needs one")}),
                        socket.MSG_DONTWAIT)
                except OSError:
                    pass  # its buffer is full or it is gone: it learns by the close alone
                finally:
                    record.send_lock.release()
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes its thread, which frees the slot
            except OSError:
                pass
        # The thread gives its slot back as soon as it wakes; the guard only bounds a thread
        # that somehow does not (the new client is then refused, as before).
        return self._slots.acquire(timeout=self.idle_timeout)

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
            with self._lock:
                record = self._serving[conn]
            self._converse(conn, record)
        except OSError:
            pass  # gone (reset, broken pipe), idle too long, or close(): nobody to tell
        finally:
            with self._lock:
                del self._serving[conn]
            self._slots.release()  # before close(): a client that sees it closed may reconnect
            conn.close()

    def _converse(self, conn: socket.socket, record: _Connection) -> None:
        pending = b""  # never more than max_line + 1 bytes: recv() asks for no more
        while True:
            end = pending.find(b"\n")
            if end >= 0:
                line, pending = pending[:end], pending[end + 1:]
                with self._lock:
                    record.handling = True
                try:
                    reply = _line(self._answer(line))
                finally:
                    with self._lock:
                        record.handling = False
                self._send(conn, record, reply)
            elif len(pending) > self.max_line:
                self._send(conn, record, _line({
                    "ok": False, "error": f"request line longer than {self.max_line} bytes"}))
                return  # the rest of the line cannot be told from a next request
            else:
                chunk = conn.recv(self.max_line + 1 - len(pending))
                if not chunk:
                    return
                pending += chunk
                record.last_active = time.monotonic()

    def _send(self, conn: socket.socket, record: _Connection, reply: bytes) -> None:
        # active as of now, before the reply leaves: a client that has read it never finds
        # its connection counted idle from before it spoke
        record.last_active = time.monotonic()
        with record.send_lock:
            conn.sendall(reply)

    def _answer(self, line: bytes) -> dict:
        """The reply to one request line: whatever the line holds, this connection (and the
        server) goes on serving."""
        try:
            return self._handle(line)
        except Exception as exc:  # noqa: BLE001 - no request may end the connection's thread
            return {"ok": False, "error": f"could not handle the request: "
                                          f"{type(exc).__name__}: {exc}"}

    def _handle(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError(f"a request is a JSON object, not {type(request).__name__}")
            if request["command"] == Setting.value:
                command = Setting(_number(request.get("lr")), _number(request.get("momentum")),
                                  source="control socket")
                command.check()
            else:
                command = Command(request["command"])     # a word of the table without values
        # RecursionError: deeply nested JSON ("[[[[..."), which fits well within max_line;
        # OverflowError: a number too large for a float (lr=1 followed by 400 digits)
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        self.commands.put(command)
        if self.on_command is not None:
            self.on_command(command)
        return {"ok": True, "command": command.value}


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r:.40}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"not a number a float can hold: {str(value)[:20]}… "
                         f"({len(str(value))} digits)") from None


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
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    sock.connect(self.path)
                    break
                except BlockingIOError:
                    # The server's backlog is full (a burst of clients it is still making room
                    # for): a Unix socket with a timeout does not wait for it, so wait here.
                    if time.monotonic() > deadline:
                        sock.close()
                        raise
                    time.sleep(0.01)
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
