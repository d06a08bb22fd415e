"""`luna-tui ctl RUN COMMAND`: command a running run from a script or another terminal, and
say what the run acknowledged in its event file. The commands, the event that acknowledges
each and the words for it are luna_core.run.command_table.COMMANDS. A run that is not running, or a
command it refuses, is a one-line error and exit 2. No torch here."""

from __future__ import annotations

import sys
import time

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.command_table import Setting, command_spec, commands_said
from luna_core.run.control_socket import ControlClient
from luna_core.run.eventfile import EventFileFollower, run_event_file
from luna_core.run.fold import RunState
from luna_core.run.runs import ENDED_STATES, read_run, resolve_run_dir

EXIT_OK, EXIT_NO_ACK = 0, 1  # refused or not running: LunaInputError (exit 2)


def _after(event: ev.BatchDone) -> str:
    """Where a batch event leaves the run, counted as the cockpit does: 'after E1 trn batch
    10/83' is after the 10th of 83 batches (batch_ndx 9)."""
    return f"after E{event.epoch} {event.phase} batch {event.batch_ndx + 1}/{event.batch_count}"


def _where(run: RunState) -> str:
    """Where the run's latest batch event leaves it ('' before one)."""
    return _after(run.last_batch) if run.last_batch is not None else ""


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


def ctl(target: str, command: str, runs_dir: str, wait_s: float = 120.0,
        out=None, values: list[str] | None = None) -> int:
    out = out or sys.stdout
    try:
        spec = command_spec(command)
    except KeyError:
        raise LunaInputError(f"unknown command '{command}': use one of "
                             f"{commands_said()}") from None
    setting = parse_setting(values or []) if spec.takes_values else None
    if values and not spec.takes_values:
        raise LunaInputError(f"'{command}' takes no values ({' '.join(values)})")
    run_dir = resolve_run_dir(target, runs_dir)
    info = read_run(run_dir)
    if info.state in ENDED_STATES or not info.control_socket:
        raise LunaInputError(f"the run is not running ({info.state}): nothing takes "
                             f"'{command}'", path=run_dir)
    follower = EventFileFollower(run_event_file(run_dir))
    run = RunState.of(follower.poll())          # where the run is now
    status, where = run.status, _where(run)
    if not spec.means_something(status == ev.PAUSED):     # already paused, not paused
        said = spec.moot.format(where=where, status=status or "starting")
        out.write(f"{said}\n".replace("  ", " "))
        return EXIT_OK
    client = ControlClient(info.control_socket)
    try:
        reply = client.put(command if setting is None else setting)
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
            run(event)
            where = _where(run)
            if spec.ack.by(event):
                out.write(spec.ack.line(event, where) + "\n")
                return EXIT_OK
            if event is run.finished:                 # the run's final event
                out.write(f"the run ended ({event.state}) before acknowledging "
                          f"'{command}'\n")
                return EXIT_NO_ACK
        time.sleep(0.1)
    out.write(f"'{command}' sent; no acknowledgement within {wait_s:g} s (a long batch?)\n")
    return EXIT_NO_ACK
