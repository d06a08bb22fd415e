"""Custom messages of the cockpit."""

from __future__ import annotations

from textual.message import Message


class RunEnded(Message):
    """The in-process training thread has returned (or raised)."""

    def __init__(self, exit_code: int, failure: str | None = None) -> None:
        super().__init__()
        self.exit_code = exit_code
        self.failure = failure


class CheckpointArrived(Message):
    """A CheckpointSaved event showed up in the snapshot."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__()
        self.path = path
        self.reason = reason


class CommandFailed(Message):
    """A command for an attached run could not be delivered (the run does not answer)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__()
        self.command = command
        self.error = error
