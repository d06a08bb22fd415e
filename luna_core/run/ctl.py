"""`luna-tui ctl RUN COMMAND`: command a running run from a script or another terminal, and
say what the run acknowledged in its event file (pause, resume, checkpoint, stop). A run that is
not running, or a command it refuses, is a one-line error and exit 2. No torch here."""

from __future__ import annotations

import sys
import time

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.commands import Setting
from luna_core.run.control import ControlClient
from luna_core.run.eventfile import EventFileFollower, run_event_file
from luna_core.run.runs import ENDED_STATES, read_run, resolve_run_dir

EXIT_OK, EXIT_NO_ACK, EXIT_REFUSED = 0, 1, 2
WORKING = (ev.TRAINING, ev.VALIDATING)


def _acknowledges(command: str, event: ev.Event) -> bool:
    if command == "pause":
        return isinstance(event, ev.StatusChanged) and event.state == ev.PAUSED
    if command == "resume":
        return isinstance(event, ev.StatusChanged) and event.state in WORKING
    if command == "checkpoint":
        return isinstance(event, ev.CheckpointSaved) and event.reason == "request"
    if command == "stop":
        return isinstance(event, ev.RunFinished)
    if command == "set":
        return isinstance(event, ev.OptimizerChanged)
    return False


def _after(event: ev.BatchDone) -> str:
    """Where a batch event leaves the run, counted as the cockpit does: 'after E1 trn batch
    10/83' is after the 10th of 83 batches (batch_ndx 9)."""
    return f"after E{event.epoch} {event.phase} batch {event.batch_ndx + 1}/{event.batch_count}"


def _said(command: str, event: ev.Event, where: str) -> str:
    if command == "checkpoint":
        return f"checkpoint saved at E{event.epoch} batch {event.batch_ndx}: {event.path}"
    if command == "set":
        return (f"lr {event.old_lr:g} -> {event.lr:g}, momentum {event.old_momentum:g} -> "
                f"{event.momentum:g} at E{event.epoch} batch {event.batch_ndx}")
    if command == "stop":
        last = event.last_checkpoint or "none"
        return f"stopped ({event.state}, exit status {event.exit_code}); last checkpoint {last}"
    return f"{'paused' if command == 'pause' else 'resumed'} {where}".rstrip()


def parse_setting(values: list[str]) -> Setting:
    """``lr=X momentum=Y`` (either or both) as a checked Setting; LunaInputError if not."""
    fields: dict[str, float] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key not in ("lr", "momentum"):
            raise LunaInputError(f"set takes lr=X and/or momentum=Y, not {item!r}")
        try:
            fields[key] = float(value)
        except ValueError:
            raise LunaInputError(f"{key} must be a number, not {value!r}") from None
    setting = Setting(fields.get("lr"), fields.get("momentum"), source="ctl")
    try:
        setting.check()
    except ValueError as exc:
        raise LunaInputError(f"refused: {exc}") from None
    return setting


#: What `ctl` sends (toggle_pause is the cockpit's key, not a word for scripts).
COMMANDS = ("pause", "resume", "checkpoint", "stop", "set")


def ctl(target: str, command: str, runs_dir: str, wait_s: float = 120.0,
        out=None, values: list[str] | None = None) -> int:
    out = out or sys.stdout
    if command not in COMMANDS:
        raise LunaInputError(f"unknown command '{command}': use one of "
                             f"{', '.join(COMMANDS[:-1])} or set lr=X momentum=Y")
    setting = parse_setting(values or []) if command == "set" else None
    if values and command != "set":
        raise LunaInputError(f"'{command}' takes no values ({' '.join(values)})")
    run_dir = resolve_run_dir(target, runs_dir)
    info = read_run(run_dir)
    if info.state in ENDED_STATES or not info.control_socket:
        raise LunaInputError(f"the run is not running ({info.state}): nothing takes "
                             f"'{command}'", path=run_dir)
    follower = EventFileFollower(run_event_file(run_dir))
    status, where = "", ""
    for event in follower.poll():             # where the run is now
        if isinstance(event, ev.StatusChanged):
            status = event.state
        elif isinstance(event, ev.BatchDone):
            where = _after(event)
    if command == "pause" and status == ev.PAUSED:
        out.write(f"already paused {where}\n".replace("  ", " "))
        return EXIT_OK
    if command == "resume" and status != ev.PAUSED:
        out.write(f"not paused ({status or 'starting'}): nothing to resume\n")
        return EXIT_OK
    client = ControlClient(info.control_socket)
    try:
        reply = (client.request(command) if setting is None else
                 client.request("set", lr=setting.lr, momentum=setting.momentum))
    except ConnectionError as exc:
        raise LunaInputError(str(exc).split(": ", 1)[-1], path=info.control_socket) from None
    finally:
        client.close()
    if not reply.get("ok"):
        raise LunaInputError(f"the run refused '{command}': {reply.get('error')}",
                             path=run_dir)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for event in follower.poll():
            if isinstance(event, ev.BatchDone):
                where = _after(event)
            if _acknowledges(command, event):
                out.write(_said(command, event, where) + "\n")
                return EXIT_OK
            if isinstance(event, ev.RunFinished):
                out.write(f"the run ended ({event.state}) before acknowledging "
                          f"'{command}'\n")
                return EXIT_NO_ACK
        time.sleep(0.1)
    out.write(f"'{command}' sent; no acknowledgement within {wait_s:g} s (a long batch?)\n")
    return EXIT_NO_ACK
