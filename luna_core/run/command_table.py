"""The training loop's commands, declared once in ``COMMANDS``, and its command channel.

``COMMANDS`` is the table every sender and the loop read: its word on the control socket and
for `luna-tui ctl`, whether a read-only link may send it, the cockpit's key and what it says
while the run has not acted yet, the event that acknowledges it and ctl's line for it, the help
lines, and ``RunControl``'s method that acts on it (luna_core.train.run_flags). A new command
is one entry here and its handler there. ``Command`` (the commands without values) is made from
the table; ``Setting`` is the value of ``set`` (a new learning rate and/or momentum).

Commands are put from any thread (the cockpit, an attach socket) or from a signal handler,
and the loop takes them at batch boundaries. ``put`` only appends to a deque (atomic, takes
no lock), so it is safe inside a signal handler. Standard library only.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import time

from luna_core.run import events as ev


@dataclasses.dataclass(frozen=True)
class CockpitKey:
    """A cockpit key that sends a command (bound once; its gate is the command's)."""

    key: str                        # Textual's name of the key ("p", "left_square_bracket")
    label: str                      # the footer's word for it
    show: bool = True               # in the footer (else in the help only)
    display: str | None = None      # how the footer writes the key ("[")
    argument: float | None = None   # what the key passes on (set: the factor of the lr)


@dataclasses.dataclass(frozen=True)
class Ack:
    """The event that says the run acted on a command: an event of ``kind`` whose ``field``
    (if any) holds one of ``values``; ``said`` is ctl's line for it, formatted with the
    event's fields (None or empty as "none") and ``where`` (the last batch ctl saw)."""

    kind: str
    said: str
    field: str = ""
    values: tuple[str, ...] = ()

    def by(self, event: ev.Event) -> bool:
        return event.kind == self.kind and (
            not self.field or getattr(event, self.field, None) in self.values)

    def line(self, event: ev.Event, where: str = "") -> str:
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        return self.said.format(where=where, **{
            name: "none" if value is None or value == "" else value
            for name, value in fields.items()}).rstrip()


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """One command, as every sender and the loop know it."""

    name: str                        # the word: {"command": NAME} on the socket, `ctl RUN NAME`
    handler: str                     # RunControl's method that acts on it (takes the command)
    help: str                        # its line in `luna-tui ctl --help`
    ack: Ack                         # the event that acknowledges it, and ctl's line for it
    read_only_ok: bool = False       # a read-only link (another host, a finished run) sends it
    paused: bool | None = None       # it means something only while (not) paused; None: either
    moot: str = ""                   # ctl's line when it does not (the run already is so)
    usage: str = ""                  # the values it takes, as ctl writes them
    refused: str = ""                # "Cannot REFUSED: why." on a read-only link
    request: str | None = None       # the cockpit's line until the run acts on it
    notice: tuple[str, str] | None = None   # the cockpit's toast when it sends it (title, text)
    keys: tuple[CockpitKey, ...] = ()        # the cockpit's keys for it
    key_help: str = ""               # their line in the cockpit's help screen

    @property
    def takes_values(self) -> bool:
        """It carries values (set: a ``Setting``), not a bare ``Command``."""
        return bool(self.usage)

    def refusal(self, why: str) -> str:
        """What a read-only link says instead of sending it."""
        return f"Cannot {self.refused or self.name}: {why}."

    def means_something(self, paused: bool) -> bool:
        """Whether it changes anything for a run that is (not) ``paused``."""
        return self.paused is None or self.paused == paused


_PAUSE_KEY_HELP = ("pause / resume the run at its next batch boundary (attached: every "
                   "cockpit on the run sees it)")

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "pause", handler="pause", paused=False,
        help="pause the run at its next batch boundary (paused time is not active time)",
        ack=Ack(ev.StatusChanged.kind, "paused {where}", "state", (ev.PAUSED,)),
        moot="already paused {where}",
        refused="pause or resume",
        request="pause requested — the loop pauses after the current batch",
        keys=(CockpitKey("p", "Pause"),), key_help=_PAUSE_KEY_HELP),
    CommandSpec(
        "resume", handler="resume", paused=True,
        help="go on from where the run paused",
        ack=Ack(ev.StatusChanged.kind, "resumed {where}", "state", (ev.TRAINING, ev.VALIDATING)),
        moot="not paused ({status}): nothing to resume",
        refused="pause or resume",
        request="resume requested",
        keys=(CockpitKey("p", "Resume"),), key_help=_PAUSE_KEY_HELP),
    CommandSpec(
        "checkpoint", handler="request_checkpoint",
        help="save a checkpoint at the next batch boundary (the run goes on)",
        ack=Ack(ev.CheckpointSaved.kind,
                "checkpoint saved at E{epoch} batch {batch_ndx}: {path}", "reason", ("request",)),
        refused="checkpoint",
        request="checkpoint requested — saved after the current batch",
        notice=("Checkpoint requested", "Saved at the next batch boundary."),
        keys=(CockpitKey("c", "Checkpoint"),),
        key_help="save a checkpoint now; a notification names the file"),
    CommandSpec(
        "stop", handler="request_stop",
        help="checkpoint at the next batch boundary, then end the run (resumable)",
        ack=Ack(ev.RunFinished.kind, "stopped ({state}, exit status {exit_code}); last "
                                     "checkpoint {last_checkpoint}"),
        refused="stop the run"),
    CommandSpec(
        "stop-after-epoch", handler="request_stop_after_epoch",
        help="end the run once this epoch is validated and checkpointed (resumable: a resume "
             "goes on at the next epoch); the last epoch ends the run anyway",
        ack=Ack(ev.StopAfterEpoch.kind, "stops at the end of E{epoch}, once it is validated "
                                        "and checkpointed (asked {where})"),
        refused="stop the run"),
    CommandSpec(
        "set", handler="take_setting", usage="lr=X momentum=Y",
        help="a new learning rate and/or momentum from the next batch on (lr=X momentum=Y)",
        ack=Ack(ev.OptimizerChanged.kind, "lr {old_lr:g} -> {lr:g}, momentum {old_momentum:g} "
                                          "-> {momentum:g} at E{epoch} batch {batch_ndx}"),
        refused="change the learning rate",
        keys=(CockpitKey("left_square_bracket", "lr ÷2", show=False, display="[",
                         argument=0.5),
              CockpitKey("right_square_bracket", "lr ×2", show=False, display="]",
                         argument=2.0)),
        key_help="halve / double the learning rate (asks first, shows old and new); the "
                 "progress pane shows the current lr and momentum"),
)

_BY_NAME = {spec.name: spec for spec in COMMANDS}


def command_spec(name: str) -> CommandSpec:
    """The table's entry for ``name``; KeyError if it is no command."""
    return _BY_NAME[name]


def commands_said() -> str:
    """The commands as a sentence: 'pause, resume, checkpoint, stop or set lr=X momentum=Y'."""
    words = [f"{spec.name} {spec.usage}".rstrip() for spec in COMMANDS]
    return f"{', '.join(words[:-1])} or {words[-1]}"


#: The commands without values (``set`` takes a ``Setting``), from the table.
Command = enum.Enum("Command", [(spec.name.upper(), spec.name) for spec in COMMANDS
                                if not spec.takes_values], module=__name__)


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
    control-socket client, the attached cockpit's sender. ``put`` takes any command of the
    table by its word, too."""

    def put(self, command: Command | Setting | str):
        raise NotImplementedError

    def pause(self):
        return self.put(Command.PAUSE)

    def resume(self):
        return self.put(Command.RESUME)

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
        self._queue: collections.deque[Command | Setting] = collections.deque()

    def put(self, command: Command | Setting | str) -> None:
        self._queue.append(command if isinstance(command, Setting) else Command(command))

    def take(self) -> list[Command | Setting]:
        """Every command waiting now, oldest first (non-blocking)."""
        taken = []
        while True:
            try:
                taken.append(self._queue.popleft())
            except IndexError:
                return taken

    def wait(self, timeout: float) -> list[Command | Setting]:
        """Block up to ``timeout`` seconds for at least one command (used while paused)."""
        deadline = time.monotonic() + timeout
        while True:
            taken = self.take()
            if taken or time.monotonic() >= deadline:
                return taken
            time.sleep(0.02)
