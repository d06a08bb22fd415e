"""The training loop's command channel: pause, resume, checkpoint, stop.

Commands are put from any thread (the cockpit, an attach socket) or from a signal handler,
and the loop takes them at batch boundaries. ``put`` only appends to a deque (atomic, takes
no lock), so it is safe inside a signal handler.
"""

from __future__ import annotations

import collections
import enum
import time


class Command(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    TOGGLE_PAUSE = "toggle_pause"
    CHECKPOINT = "checkpoint"
    STOP = "stop"


class CommandMethods:
    """pause() ... stop() for anything with a ``put(command)``: the in-process channel, the
    control-socket client, the attached cockpit's sender."""

    def put(self, command: Command | str):
        raise NotImplementedError

    def pause(self):
        return self.put(Command.PAUSE)

    def resume(self):
        return self.put(Command.RESUME)

    def toggle_pause(self):
        return self.put(Command.TOGGLE_PAUSE)

    def checkpoint(self):
        return self.put(Command.CHECKPOINT)

    def stop(self):
        return self.put(Command.STOP)


class CommandChannel(CommandMethods):
    def __init__(self) -> None:
        self._queue: collections.deque[Command] = collections.deque()

    def put(self, command: Command | str) -> None:
        self._queue.append(Command(command))

    def take(self) -> list[Command]:
        """Every command waiting now, oldest first (non-blocking)."""
        taken = []
        while True:
            try:
                taken.append(self._queue.popleft())
            except IndexError:
                return taken

    def wait(self, timeout: float) -> list[Command]:
        """Block up to ``timeout`` seconds for at least one command (used while paused)."""
        deadline = time.monotonic() + timeout
        while True:
            taken = self.take()
            if taken or time.monotonic() >= deadline:
                return taken
            time.sleep(0.02)
