"""The control socket's server against clients that misbehave: it answers what it can, closes
what it must, and never dies or prints a traceback. No training run: a ControlServer on a
CommandChannel in tmp_path. Socket timeouts of 10 s are failure guards only."""

from __future__ import annotations

import json
import os
import select
import socket
import threading

import pytest

from luna_core.run.command_table import Command, CommandChannel
from luna_core.run.control_socket import ControlClient, ControlServer, socket_path_for

GUARD = 10.0
PAUSE = b'{"command": "pause"}\n'


class Raw:
    """A client that does exactly what the test says, byte by byte."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(GUARD)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict | None:
        """The next reply line, or None once the server has closed the connection."""
        try:
            line = self.reader.readline()
        except ConnectionResetError:  # closed with our bytes unread: as good as EOF here
            return None
        return json.loads(line) if line else None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Harness:
    def __init__(self, tmp_path, monkeypatch, capfd) -> None:
        self.path = socket_path_for(str(tmp_path))
        self.capfd = capfd
        self.crashes: list = []
        monkeypatch.setattr(threading, "excepthook", self.crashes.append)
        self.server: ControlServer | None = None

    def start(self, **options) -> CommandChannel:
        # connection threads of servers from before this test (another test's, left to its
        # idle timeout when it failed) are not this server's to wait for
        self.before = {t for t in threading.enumerate() if t.name == "luna-control-client"}
        self.channel = CommandChannel()
        self.server = ControlServer(self.path, self.channel, **options)
        self.server.start()
        return self.channel

    def finish(self) -> None:
        """Closes the server, waits for every connection thread, and checks none crashed."""
        self.server.close()
        for thread in threading.enumerate():
            if thread.name == "luna-control-client" and thread not in self.before:
                thread.join(GUARD)
                assert not thread.is_alive()
        assert [(c.exc_type, c.exc_value) for c in self.crashes] == []
        assert "Traceback" not in self.capfd.readouterr().err


@pytest.fixture
def harness(tmp_path, monkeypatch, capfd):
    return Harness(tmp_path, monkeypatch, capfd)


def test_bad_requests_get_clean_replies_and_reach_no_command(harness):
    channel = harness.start()
    client = Raw(harness.path)
    bad = [b"garbage", b"\x00\x01\xde\xad\xbe\xef", b'{"command": "\xff"}', b'{"command":',
           b"", b"[1, 2]", b'"pause"', b"5", b"null", b'{"cmd": "pause"}',
           b'{"command": "explode"}', b'{"command": ["pause"]}', b"[" * 3000]
    for line in bad:
        client.send(line + b"\n")
        reply = client.reply()
        assert reply is not None, line
        assert reply["ok"] is False and reply["error"].startswith("bad request: "), line
    assert channel.take() == []
    client.send(PAUSE + b'{"command": "resume"}\n')  # two in one write: two replies, in order
    assert client.reply() == {"ok": True, "command": "pause"}
    assert client.reply() == {"ok": True, "command": "resume"}
    assert channel.take() == [Command.PAUSE, Command.RESUME]
    client.close()
    harness.finish()


def test_clients_that_vanish_leave_no_traceback(harness):
    hold = threading.Event()
    channel = harness.start(on_command=lambda command: hold.wait(GUARD))
    # Gone before the reply is written: the server's write fails with a broken pipe.
    hold.clear()
    client = Raw(harness.path)
    client.send(PAUSE)
    client.close()
    hold.set()
    # The reply left unread: the server's next read fails with a reset.
    client = Raw(harness.path)
    client.send(PAUSE)
    assert select.select([client.sock], [], [], GUARD)[0]
    client.close()
    # Half a line, then gone.
    client = Raw(harness.path)
    client.send(b'{"command": "pa')
    client.close()
    # Invalid UTF-8 and bad JSON, then gone without reading the replies.
    client = Raw(harness.path)
    client.send(b'\xff\xfe{"command"\n[[[\n')
    client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE, Command.PAUSE]


def test_an_overlong_line_is_refused_and_the_connection_closed(harness):
    channel = harness.start(max_line=4096)
    client = Raw(harness.path)
    longest = PAUSE[:-2] + b" " * (4096 - len(PAUSE) + 1) + b"}"
    assert len(longest) == 4096
    client.send(longest + b"\n")
    assert client.reply() == {"ok": True, "command": "pause"}
    client.send(b" " * 4097)
    assert client.reply() == {"ok": False, "error": "request line longer than 4096 bytes"}
    assert client.reply() is None
    client.close()

    # 5 MB in one line: refused after the first 4 KB, so the command at its end never counts.
    client = Raw(harness.path)
    failed = []

    def flood():
        try:
            client.send(b" " * 5_000_000 + b'{"command": "stop"}\n')
        except OSError as exc:  # the server closed the connection: expected
            failed.append(exc)

    sender = threading.Thread(target=flood)
    sender.start()
    assert client.reply() == {"ok": False, "error": "request line longer than 4096 bytes"}
    assert client.reply() is None
    sender.join(GUARD)
    assert failed
    client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE]


def _closed_for_room(client: Raw) -> bool:
    """The one line a connection gets when it is closed to make room, then the close."""
    reply = client.reply()
    after = client.reply() if reply is not None else None
    ok = (reply is not None and reply["ok"] is False
          and reply["error"].startswith("closed: idle for ")
          and "a new client needs one" in reply["error"] and after is None)
    assert ok, f"got {reply!r}, then {after!r}"     # what came instead, if anything
    return ok


def test_a_full_table_closes_the_connection_idle_the_longest_for_a_new_client(harness):
    channel = harness.start(max_clients=3, idle_timeout=GUARD * 3)
    held = [Raw(harness.path) for _ in range(3)]  # every slot taken
    for i in (1, 0, 2):  # each answered in turn: held[1] is now the one idle the longest
        held[i].send(PAUSE)
        assert held[i].reply() == {"ok": True, "command": "pause"}
    newcomer = Raw(harness.path)
    assert _closed_for_room(held[1])
    newcomer.send(b'{"command": "checkpoint"}\n')
    assert newcomer.reply() == {"ok": True, "command": "checkpoint"}
    for client in (held[0], held[2]):  # the others are still served
        client.send(b'{"command": "resume"}\n')
        assert client.reply() == {"ok": True, "command": "resume"}
    assert ControlClient(harness.path).stop() == {"ok": True, "command": "stop"}
    assert _closed_for_room(newcomer)  # idle the longest once held[0] and held[2] spoke
    for client in (*held, newcomer):
        client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE] * 3 + [Command.CHECKPOINT] + [Command.RESUME] * 2 \
        + [Command.STOP]


def test_a_client_over_the_cap_is_refused_only_while_every_connection_is_busy(harness):
    entered, release = threading.Semaphore(0), threading.Event()

    def slow_command(command):
        entered.release()
        release.wait(GUARD)

    channel = harness.start(max_clients=2, idle_timeout=GUARD * 3, on_command=slow_command)
    busy = [Raw(harness.path) for _ in range(2)]
    for client in busy:
        client.send(PAUSE)
    for _ in busy:
        assert entered.acquire(timeout=GUARD)  # both are being handled now
    extra = Raw(harness.path)
    reply = extra.reply()
    assert reply["ok"] is False and reply["error"].startswith("too many clients")
    assert extra.reply() is None
    extra.close()
    release.set()
    for client in busy:
        assert client.reply() == {"ok": True, "command": "pause"}
        client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE, Command.PAUSE]


def test_a_burst_of_connections_waits_in_the_backlog_and_the_newest_are_served(harness):
    channel = harness.start(max_clients=2, idle_timeout=GUARD * 3)
    # Holding the server's lock stalls its accept loop, as a busy process would: every
    # connection must then fit in the listen backlog (a full one fails connect with EAGAIN).
    with harness.server._lock:
        clients = [Raw(harness.path) for _ in range(50)]
    # accepted in order, each one closes the oldest: only the last two keep a connection
    assert all(_closed_for_room(client) for client in clients[:48])
    for client in clients[48:]:
        client.send(PAUSE)
        assert client.reply() == {"ok": True, "command": "pause"}
    for client in clients:
        client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE, Command.PAUSE]


def test_idle_connections_are_closed_and_free_their_slots(harness):
    channel = harness.start(max_clients=2, idle_timeout=0.2)
    silent, slow = Raw(harness.path), Raw(harness.path)
    slow.send(b'{"command": ')  # half a request, and nothing more
    assert silent.reply() is None
    assert slow.reply() is None
    first = Raw(harness.path)
    first.send(PAUSE)  # at once: it too has 0.2 s
    second = Raw(harness.path)
    second.send(PAUSE)
    for client in (first, second):
        assert client.reply() == {"ok": True, "command": "pause"}
    for client in (silent, slow, first, second):
        client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE, Command.PAUSE]


def test_a_good_client_is_answered_while_others_misbehave(harness):
    channel = harness.start(max_clients=8, idle_timeout=GUARD * 3)
    idle = [Raw(harness.path) for _ in range(5)]
    slow = Raw(harness.path)
    slow.send(b'{"command": "st')
    flooder = Raw(harness.path)
    flooder.sock.setblocking(False)
    sent = 0
    try:  # garbage, replies never read, until the server's writes and then ours are stuck
        while True:
            sent += flooder.sock.send(b"garbage\n" * 4096)
    except BlockingIOError:
        pass
    assert sent > 0
    assert ControlClient(harness.path).pause() == {"ok": True, "command": "pause"}
    for client in (*idle, slow, flooder):
        client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE]


def test_the_client_reconnects_when_the_server_closed_its_idle_connection(harness):
    channel = harness.start(idle_timeout=0.2)
    client = ControlClient(harness.path)
    assert client.pause() == {"ok": True, "command": "pause"}
    assert select.select([client._sock], [], [], GUARD)[0]  # the server closed it
    assert client.resume() == {"ok": True, "command": "resume"}
    client.close()
    harness.finish()
    assert channel.take() == [Command.PAUSE, Command.RESUME]


def test_close_ends_open_connections_and_removes_the_socket(harness):
    harness.start(idle_timeout=GUARD * 3)
    client = Raw(harness.path)
    client.send(PAUSE)
    assert client.reply() == {"ok": True, "command": "pause"}
    harness.server.close()
    assert client.reply() is None
    assert not os.path.exists(harness.path)
    client.close()
    harness.finish()
