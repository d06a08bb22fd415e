"""Finding runs and telling their state from their event files (`luna-tui runs`, attach).

The rules every reader of a run uses: what a run directory is (``run_event_file``,
``not_a_run``), whether a run has ended (``ENDED_STATES``), whether it is on this host
(``on_this_host``) and whether its process is gone without a final event (``process_gone``:
the ``crashed`` state)."""

from __future__ import annotations

import glob
import os
import socket
from dataclasses import dataclass

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.eventfile import EVENT_FILE_NAME, read_events, run_event_file

RUNNING = "running"
CRASHED = "crashed"          # no final event, and its process is gone: ended unexpectedly

#: States after which nothing more happens in this process of the run. CRASHED is never sent
#: by a trainer: a reader folds it in when the run's process is gone without a final event
#: (crash, SIGKILL, reboot).
ENDED_STATES = (ev.FINISHED, ev.STOPPED, ev.FAILED, CRASHED)


@dataclass
class RunInfo:
    run_dir: str
    state: str               # running, finished, stopped, failed, crashed
    started: float
    epoch: int | None
    epochs: int
    val_loss: float | None
    val_correct_pos: float | None
    pid: int
    host: str
    control_socket: str | None
    last_checkpoint: str | None
    error: str | None


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """Is ``pid`` still the run's process? A zombie is not, and neither is a newer process
    that got the same pid (it started after the run did)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or proc.create_time() <= started_at + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def this_host() -> str:
    return socket.gethostname()


def on_this_host(host: str) -> bool:
    """Can this machine see the run's process? (A run that did not say its host is local.)"""
    return not host or host == this_host()


def process_gone(run: ev.RunStarted) -> bool:
    """Is the process of ``run`` (one without a final event) gone? Only on its own host can
    that be told: another host's run counts as alive (trust the file)."""
    return on_this_host(run.host) and not process_alive(run.pid, run.t)


def not_a_run(path: str) -> LunaInputError:
    return LunaInputError("no run_started event: not a luna-tui run", path)


def summarize(run_dir: str, events: list[ev.Event]) -> RunInfo:
    starts = [i for i, e in enumerate(events) if isinstance(e, ev.RunStarted)]
    if not starts:
        raise not_a_run(os.path.join(run_dir, EVENT_FILE_NAME))
    first = events[starts[0]]
    current = events[starts[-1]]            # the latest process of this run (after resumes)
    segment = events[starts[-1]:]
    finished = next((e for e in reversed(segment) if isinstance(e, ev.RunFinished)), None)
    if finished is not None:
        state = finished.state
    else:
        state = CRASHED if process_gone(current) else RUNNING
    epoch = None
    val_loss = val_pos = None
    for e in events:
        if isinstance(e, ev.EpochMetrics) and e.phase == "val":
            epoch, val_loss, val_pos = e.epoch, e.metrics["loss/all"], e.metrics["correct/pos"]
        elif isinstance(e, ev.PhaseStarted):
            epoch = e.epoch if epoch is None else max(epoch, e.epoch)
    checkpoints = [e.path for e in events if isinstance(e, ev.CheckpointSaved)]
    return RunInfo(
        run_dir=run_dir, state=state, started=first.t, epoch=epoch, epochs=current.epochs,
        val_loss=val_loss, val_correct_pos=val_pos, pid=current.pid, host=current.host,
        control_socket=current.control_socket,
        last_checkpoint=checkpoints[-1] if checkpoints else None,
        error=finished.error if finished is not None else None)


def read_run(run_dir: str) -> RunInfo:
    return summarize(run_dir, read_events(run_event_file(run_dir)))


def find_run_dirs(runs_dir: str) -> list[str]:
    """Run directories under runs_dir (any tb-prefix), oldest first by start time."""
    found = glob.glob(os.path.join(runs_dir, "*", "*", EVENT_FILE_NAME))
    found += glob.glob(os.path.join(runs_dir, "*", EVENT_FILE_NAME))
    dirs = sorted({os.path.dirname(p) for p in found}, key=lambda d: (os.path.getmtime(
        os.path.join(d, EVENT_FILE_NAME)), d))
    return dirs


def list_runs_with_events(runs_dir: str) -> list[tuple[RunInfo, list[ev.Event]]]:
    """Each run with its events but the batch and log lines, oldest first: its index
    (luna_core.run.index), else one read of its event file."""
    from luna_core.run.index import read_run_events

    found = []
    for run_dir in find_run_dirs(runs_dir):
        try:
            events = read_run_events(run_dir)
            found.append((summarize(run_dir, events), events))
        except LunaInputError:
            continue  # an empty or foreign events.jsonl: not ours to list
    return sorted(found, key=lambda pair: pair[0].started)


def list_runs(runs_dir: str) -> list[RunInfo]:
    return [info for info, _events in list_runs_with_events(runs_dir)]


def resolve_run_dir(target: str, runs_dir: str, validated: bool = False) -> str:
    """``target``, or for 'latest' the newest run under ``runs_dir``; ``validated``: the
    newest that has finished a validation (a run that failed before its first epoch has
    nothing to compare)."""
    if target != "latest":
        return target
    runs = list_runs(runs_dir)
    if not runs:
        raise LunaInputError("no runs here (start one with luna-tui --headless)", runs_dir)
    if validated:
        runs = [run for run in runs if run.val_loss is not None]
        if not runs:
            raise LunaInputError("no run here has finished a validation yet", runs_dir)
    return runs[-1].run_dir
