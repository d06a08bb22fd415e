"""The training loop's command channel: pause, resume, checkpoint, stop, and ``Setting``
(a new learning rate and/or momentum).

Commands are put from any thread (the cockpit, an attach socket) or from a signal handler,
and the loop takes them at batch boundaries. ``put`` only appends to a deque (atomic, takes
no lock), so it is safe inside a signal handler.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import time


class Command(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    TOGGLE_PAUSE = "toggle_pause"
    CHECKPOINT = "checkpoint"
    STOP = "stop"


@dataclasses.dataclass(frozen=True)
class Setting:
    """Change the optimizer at the next batch boundary: ``lr`` and/or ``momentum`` (None
    keeps it); ``source`` says where it came from (socket, cockpit, ...)."""

    lr: float | None = None
    momentum: float | None = None
    source: str = ""

    value = "set"          # as a Command's, for logs and acknowledgements

    def check(self) -> None:
        """ValueError for a value the optimizer must not get."""
        if self.lr is None and self.momentum is None:
            raise ValueError("set needs lr=X and/or momentum=Y")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and positive, not {self.lr}")
        if self.momentum is not None and not (math.isfinite(self.momentum)
                                              and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), not {self.momentum}")


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

    def set(self, lr: float | None = None, momentum: float | None = None, source: str = ""):
        setting = Setting(lr, momentum, source)
        setting.check()
        return self.put(setting)


class CommandChannel(CommandMethods):
    def __init__(self) -> None:
        self._queue: collections.deque[Command] = collections.deque()

    def put(self, command: Command | Setting | str) -> None:
        self._queue.append(command if isinstance(command, Setting) else Command(command))

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
