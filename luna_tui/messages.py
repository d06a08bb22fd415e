"""Custom messages of the cockpit (dataclasses: Textual's Message supports them)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class RunEnded(Message):
    """The in-process training thread has returned (or raised): its result."""

    exit_code: int
    failure: str | None = None            # what failed, where
    traceback: str | None = None          # the trainer's traceback, when it raised


@dataclass
class CheckpointArrived(Message):
    """A CheckpointSaved event showed up in the snapshot."""

    path: str
    reason: str


@dataclass
class CommandFailed(Message):
    """A command for an attached run could not be delivered (the run does not answer)."""

    command: str
    error: str
