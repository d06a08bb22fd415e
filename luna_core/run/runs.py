"""Finding runs and telling their state from their event files (`luna-tui runs`, attach).

The rules every reader of a run uses: what a run directory is (``run_event_file``,
``not_a_run``), whether a run has ended (``ENDED_STATES``, with the states: they live in
luna_core.run.fold, which tells a run's state from its events), whether it is on this host
(``on_this_host``) and whether its process is gone without a final event (``process_gone``:
the ``crashed`` state)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from luna_core.errors import LunaInputError
from luna_core.proc import process_alive
from luna_core.run import events as ev
from luna_core.run.eventfile import EVENT_FILE_NAME, read_events, run_event_file
from luna_core.run.fold import (
    CRASHED,
    ENDED_STATES,  # noqa: F401 - the rule's name for its readers
    RUNNING,
    RunState,
)
from luna_core.run.metric_catalog import CORRECT_POS, LOSS


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
    epochs_done: int = 0     # the furthest epoch validated or checkpointed at its end
    task: str = "nodule"     # what it trains (--task)

    def epoch_text(self) -> str:
        """'2/3': epochs done of those asked for; '1/2, in E2' when it is (or was, when it
        stopped) inside a later one."""
        text = f"{self.epochs_done}/{self.epochs}"
        if self.epoch is not None and self.epoch > self.epochs_done:
            text += f", in E{self.epoch}"
        return text


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
    run = RunState.of(events)
    first, current = run.started, run.current   # current: the latest process (after resumes)
    if first is None or current is None:
        raise not_a_run(os.path.join(run_dir, EVENT_FILE_NAME))
    finished = run.finished
    if finished is not None:
        state = finished.state
    else:
        state = CRASHED if process_gone(current) else RUNNING
    last = run.last_validation.metrics if run.last_validation is not None else {}
    saved = run.checkpoints[-1] if run.checkpoints else None
    return RunInfo(
        run_dir=run_dir, state=state, started=first.t, epoch=run.reached,
        epochs_done=max(run.epochs_done, max(run.validations, default=0)),
        epochs=current.epochs, val_loss=last.get(LOSS.key),
        val_correct_pos=last.get(CORRECT_POS.key), pid=current.pid, host=current.host,
        control_socket=current.control_socket,
        # as recorded, moved to where the run is read from
        last_checkpoint=rebase(saved.path, run.checkpoint_run_dir, run_dir) if saved else None,
        error=finished.error if finished is not None else None,
        task=(first.options or {}).get("task") or "nodule")


def read_run(run_dir: str) -> RunInfo:
    return summarize(run_dir, read_events(run_event_file(run_dir)))


def rebase(path: str | None, recorded_run_dir: str | None, run_dir: str) -> str | None:
    """A path a run recorded (a checkpoint, its examples), moved to the run folder being
    read: events hold the paths as the run saw them, so a run folder copied or moved
    elsewhere would point at the original's files. Only a path under ``recorded_run_dir``
    (the run_dir of the run_started before it) moves; any other is returned as it is."""
    if not path or not recorded_run_dir or not run_dir:
        return path
    recorded = os.path.normpath(recorded_run_dir)
    norm = os.path.normpath(path)
    if norm == recorded:
        return run_dir
    if not norm.startswith(recorded.rstrip(os.sep) + os.sep):
        return path
    return os.path.join(run_dir, norm[len(recorded.rstrip(os.sep)) + 1:])


def check_runs_dir(runs_dir: str) -> None:
    """LunaInputError when ``runs_dir`` exists but cannot be listed (not a folder, no
    permission): such a folder must not read as "no runs". A folder that does not exist is
    fine: it has no runs yet."""
    try:
        with os.scandir(runs_dir):
            pass
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise LunaInputError("not a folder: cannot hold runs", runs_dir) from None
    except OSError as exc:
        raise LunaInputError(f"cannot read the runs folder ({exc.strerror or exc})",
                             runs_dir) from None


def _subdirs(folder: str, problems: list[str] | None) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [e.path for e in entries if not e.name.startswith(".") and _is_dir(e)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        if problems is not None:
            problems.append(str(LunaInputError(f"cannot read this folder "
                                               f"({exc.strerror or exc}); its runs are not "
                                               "listed", folder)))
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def find_run_dirs(runs_dir: str, problems: list[str] | None = None) -> list[str]:
    """Run directories under runs_dir (any tb-prefix), oldest first by start time. A folder
    that cannot be read is left out, and said in ``problems`` when given."""
    found = set()
    for first in _subdirs(runs_dir, problems):
        if os.path.isfile(os.path.join(first, EVENT_FILE_NAME)):
            found.add(first)
        for second in _subdirs(first, problems):
            if os.path.isfile(os.path.join(second, EVENT_FILE_NAME)):
                found.add(second)
    return sorted(found, key=lambda d: (_mtime(os.path.join(d, EVENT_FILE_NAME)), d))


def list_runs_with_events(runs_dir: str, problems: list[str] | None = None
                          ) -> list[tuple[RunInfo, list[ev.Event]]]:
    """Each run with its events but the batch and log lines, oldest first: its index
    (luna_core.run.index), else one read of its event file. A run whose files cannot be read
    is left out, and said in ``problems`` (one line naming the file) when given; the other
    runs are listed all the same."""
    from luna_core.run.index import read_run_events

    found = []
    for run_dir in find_run_dirs(runs_dir, problems):
        try:
            events = read_run_events(run_dir)
            if not events:
                continue      # an empty event file: a run starting this very moment
            found.append((summarize(run_dir, events), events))
        except LunaInputError as exc:
            if problems is not None:
                problems.append(f"{exc} (not listed)")
        except OSError as exc:
            if problems is not None:
                problems.append(str(LunaInputError(
                    f"cannot read it ({exc.strerror or exc}); not listed",
                    exc.filename or run_dir)))
    return sorted(found, key=lambda pair: pair[0].started)


def list_runs(runs_dir: str) -> list[RunInfo]:
    return [info for info, _events in list_runs_with_events(runs_dir)]


def resolve_run_dir(target: str, runs_dir: str, validated: bool = False) -> str:
    """``target``, or for 'latest' the newest run under ``runs_dir``; ``validated``: the
    newest that has finished a validation (a run that failed before its first epoch has
    nothing to compare)."""
    if target != "latest":
        return target
    check_runs_dir(runs_dir)
    runs = list_runs(runs_dir)
    if not runs:
        raise LunaInputError("no runs here (start one with luna-tui --headless)", runs_dir)
    if validated:
        runs = [run for run in runs if run.val_loss is not None]
        if not runs:
            raise LunaInputError("no run here has finished a validation yet", runs_dir)
    return runs[-1].run_dir
