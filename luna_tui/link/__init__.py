"""Where a cockpit's run lives, and what the cockpit may do with it: the ``RunLink``.

- ``luna_tui.link.local.LocalLink``: the run trains in this process, in a thread the app
  starts (a Textual thread worker); commands go to its ``CommandChannel``; quitting stops the
  run (it checkpoints) and waits for it.
- ``luna_tui.link.remote.RemoteLink``: a run in another process (`luna-tui attach`): its event
  file is the snapshot, its control socket takes the commands; quitting detaches (the run goes
  on), or stops the run when asked; it may be read-only (the run is over, on another host, or
  has no socket).

No Textual here: the app (luna_tui.app) is one class over either link.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from luna_core.run.command_table import command_spec
from luna_tui.model.snapshot import RunSnapshot


class Commands(Protocol):
    """What the cockpit sends a run (luna_core.run.command_table.CommandMethods has them all):
    ``put`` takes any command of luna_core.run.command_table.COMMANDS by its word."""

    def put(self, command) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def checkpoint(self) -> None: ...
    def stop(self) -> None: ...
    def set(self, lr: float | None = None, momentum: float | None = None,
            source: str = "") -> None: ...


class RunLink:
    """A run as the cockpit reaches it. Subclasses set ``source`` and ``commands``."""

    #: True: the run lives in another process; quitting leaves it running (detach).
    attached = False
    #: The app's title.
    title = "LUNA cockpit"
    #: The training thread the app runs (luna_tui.link.local.TrainerThread), or None: the run
    #: is fed from elsewhere.
    trainer = None

    def __init__(self, source, commands: Commands) -> None:
        self.source = source            # anything with snapshot() -> RunSnapshot
        self.commands = commands

    def snapshot(self) -> RunSnapshot:
        return self.source.snapshot()

    def read_only_reason(self, snap: RunSnapshot) -> str | None:
        """Why the keys that steer the run cannot act now, or None when they can."""
        return None

    def refusal(self, command: str, snap: RunSnapshot) -> str | None:
        """What this link says instead of sending ``command`` (a word of
        luna_core.run.command_table.COMMANDS) now: its table's wording and why the link is
        read-only; None when it may send it."""
        spec = command_spec(command)
        why = self.read_only_reason(snap)
        return None if why is None or spec.read_only_ok else spec.refusal(why)

    def start(self, on_command_failed: Callable[[str, str], None]) -> None:
        """The app is up: start following the run. ``on_command_failed(command, error)`` is
        called (from any thread) when a command did not reach the run."""

    def close(self) -> None:
        """The app is going: stop following the run (the run itself is not touched)."""
