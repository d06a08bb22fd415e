"""An experiment queue: runs to make one after another, headless, unattended; a run that fails
is marked with its one-line reason and the queue goes on.

The queue is one file, ``RUNS_DIR/queue.json``, rewritten atomically on every change::

    {"format": 1, "next_id": 4, "halt": false,
     "entries": [{"id": 1, "argv": ["--epochs", "3", "plain"], "state": "done",
                  "added": 1765000000.0, "started": ..., "ended": ..., "pid": 4242,
                  "run_dir": "runs/luna/2026-12-06_13.20.00-plain", "exit_code": 0,
                  "reason": ""}, ...]}

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``stopped`` (``queue stop``, or the
run or its runner stopped by SIGINT/SIGTERM/SIGHUP: the run checkpointed, the queue halted;
the next ``queue run`` resumes it). Only ``queue run`` starts runs, and only one at a time: it
holds ``RUNS_DIR/queue.lock`` with ``flock`` while it works, a lock the kernel drops when the
process dies, so a crashed or killed runner leaves none behind.

A runner that finds an entry ``running`` (its runner was killed: SIGKILL, a reboot) or
``stopped`` first waits until the entry's previous process is gone (its run folder's lock,
luna_core.run.runlock, or its pid), so that one entry never trains twice at once; then it
resumes that run from its last checkpoint (``--resume RUN_DIR``), marks it done if it had
finished, or starts it again when it never got to a checkpoint. Each attempt gets a run id
(``LUNA_RUN_ID`` in the child's environment, written in its ``run_started``): the runner finds
its child's run folder by that id, never by pid. No torch here: runs are child processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shlex
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write

QUEUE_FILE, LOCK_FILE = "queue.json", "queue.lock"
FORMAT = 1
QUEUED, RUNNING, DONE, FAILED, STOPPED = "queued", "running", "done", "failed", "stopped"
STATES = (QUEUED, RUNNING, DONE, FAILED, STOPPED)

#: Chapter 12's experiments, one entry each (the options given to `queue add` go with each).
PRESETS = {
    "ch12": [
        ("plain", []),
        ("balanced", ["--balanced"]),
        ("balanced-flip", ["--balanced", "--augment-flip"]),
        ("balanced-offset", ["--balanced", "--augment-offset"]),
        ("balanced-scale", ["--balanced", "--augment-scale"]),
        ("balanced-rotate", ["--balanced", "--augment-rotate"]),
        ("balanced-noise", ["--balanced", "--augment-noise"]),
        ("balanced-augmented", ["--balanced", "--augmented"]),
    ],
}


@dataclass
class Entry:
    id: int
    argv: list[str]
    state: str = QUEUED
    added: float = 0.0
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    run_dir: str | None = None
    exit_code: int | None = None
    reason: str = ""
    attempts: int = 0              # times a run was started for it (fresh or resumed)
    run_id: str = ""               # the current attempt's run id (its run_started has it)
    pid_created: float | None = None   # when process ``pid`` started (tells a reused pid)

    def describe(self) -> str:
        return " ".join(self.argv) or "(the defaults)"


@dataclass
class Queue:
    entries: list[Entry] = field(default_factory=list)
    next_id: int = 1
    halt: bool = False

    def get(self, entry_id: int) -> Entry:
        for e in self.entries:
            if e.id == entry_id:
                return e
        raise LunaInputError(f"no queue entry {entry_id} (see 'luna-tui queue ls')")

    def add(self, argv: list[str], now: float | None = None) -> Entry:
        entry = Entry(self.next_id, list(argv), added=time.time() if now is None else now)
        self.next_id += 1
        self.entries.append(entry)
        return entry

    def pending(self) -> Entry | None:
        """What a runner does next: an interrupted run first (running or stopped: resumed),
        then the first queued entry."""
        for state in (RUNNING, STOPPED, QUEUED):
            for e in self.entries:
                if e.state == state:
                    return e
        return None


def queue_path(runs_dir: str) -> str:
    return os.path.join(runs_dir, QUEUE_FILE)


#: Each field of an entry and the types it may hold (None where the field may be unset).
_FIELD_TYPES = {
    "id": (int,), "argv": (list,), "state": (str,), "added": (int, float),
    "started": (int, float, type(None)), "ended": (int, float, type(None)),
    "pid": (int, type(None)), "run_dir": (str, type(None)), "exit_code": (int, type(None)),
    "reason": (str,), "attempts": (int,), "run_id": (str,),
    "pid_created": (int, float, type(None)),
}


def _entry(item, k: int, path: str) -> Entry:
    """One entry of the file, its shape checked (LunaInputError naming the file)."""
    def bad(what: str) -> LunaInputError:
        return LunaInputError(f"not a luna-tui queue file: entries[{k}] {what}", path)

    if not isinstance(item, dict):
        raise bad("is not an object")
    for name in ("id", "argv"):
        if name not in item:
            raise bad(f"has no {name!r}")
    fields = {}
    for name, value in item.items():
        kinds = _FIELD_TYPES.get(name)
        if kinds is None:
            continue                      # a newer writer's field: skipped
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise bad(f"has a {name!r} of the wrong type ({type(value).__name__})")
        fields[name] = value
    if not all(isinstance(a, str) for a in fields["argv"]):
        raise bad("has an 'argv' that is not a list of strings")
    if fields.get("state", QUEUED) not in STATES:
        raise bad(f"has an unknown state {fields['state']!r}")
    return Entry(**fields)


def load(runs_dir: str) -> Queue:
    """The queue, its shape checked: a file that is not a queue is refused in one line naming
    it (never a traceback)."""
    path = queue_path(runs_dir)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return Queue()
    except (OSError, ValueError, RecursionError) as exc:
        raise LunaInputError(f"not a readable queue file ({exc})", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise LunaInputError("not a luna-tui queue file (an object with 'entries' expected)",
                             path)
    version = data.get("format", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise LunaInputError(f"not a luna-tui queue file (format {version!r})", path)
    if version > FORMAT:
        raise LunaInputError(f"queue format {version} is newer than this luna-tui reads "
                             f"({FORMAT})", path)
    entries = [_entry(item, k, path) for k, item in enumerate(data["entries"])]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise LunaInputError("not a luna-tui queue file: two entries have one id", path)
    next_id = data.get("next_id", max(ids, default=0) + 1)
    if not isinstance(next_id, int) or isinstance(next_id, bool):
        raise LunaInputError(f"not a luna-tui queue file (next_id {next_id!r})", path)
    return Queue(entries, max(next_id, max(ids, default=0) + 1),
                 data.get("halt") is True)


def save(runs_dir: str, queue: Queue) -> None:
    os.makedirs(runs_dir, exist_ok=True)
    data = {"format": FORMAT, "next_id": queue.next_id, "halt": queue.halt,
            "entries": [asdict(e) for e in queue.entries]}
    with atomic_write(queue_path(runs_dir), text=True) as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def check_runs_dir(runs_dir: str, write: bool = True) -> None:
    """Before a queue command: the runs folder, where it exists, is a folder this process
    can read (and write): LunaInputError naming it otherwise. Nothing is created."""
    if not os.path.exists(runs_dir):
        return
    if not os.path.isdir(runs_dir):
        raise LunaInputError("not a folder (the runs folder must be one)", runs_dir)
    if not os.access(runs_dir, os.R_OK | os.X_OK | (os.W_OK if write else 0)):
        raise LunaInputError(f"cannot {'write to' if write else 'read'} the runs folder "
                             f"(permission denied)", runs_dir)


def _runs_dir_ready(runs_dir: str) -> None:
    """The runs folder exists and is one (LunaInputError naming it otherwise)."""
    try:
        os.makedirs(runs_dir, exist_ok=True)
    except FileExistsError:
        raise LunaInputError("not a folder (the runs folder must be one)", runs_dir) from None
    except OSError as exc:
        raise LunaInputError(f"cannot create the runs folder: {exc.strerror or exc}",
                             runs_dir) from None


def _open_lock(path: str):
    try:
        return open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise LunaInputError(f"cannot open the queue's lock file: {exc.strerror or exc}",
                             path) from None


@contextlib.contextmanager
def editing(runs_dir: str) -> Iterator[Queue]:
    """The queue, changed and saved as one step (a short lock on the file beside it, so a
    runner's update and an `add` never lose each other's changes). A queue that cannot be
    read or written is a LunaInputError naming the file, and nothing is changed."""
    _runs_dir_ready(runs_dir)
    with _open_lock(os.path.join(runs_dir, ".queue.edit")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        queue = load(runs_dir)
        yield queue
        try:
            save(runs_dir, queue)
        except OSError as exc:
            raise LunaInputError(f"could not write the queue: {exc.strerror or exc}",
                                 queue_path(runs_dir)) from None


def remove(runs_dir: str, entry_id: int) -> Entry:
    """Take an entry out of the queue, read afresh under the lock: a running entry is
    refused (whatever a caller's older copy of the queue said)."""
    with editing(runs_dir) as q:
        e = q.get(entry_id)
        if e.state == RUNNING:
            raise LunaInputError(f"#{entry_id} is running: 'luna-tui queue stop' first")
        q.entries.remove(e)
    return e


class RunnerBusy(LunaInputError):
    pass


@contextlib.contextmanager
def runner_lock(runs_dir: str) -> Iterator[None]:
    """Held while a runner works; a second runner is refused at once. The kernel drops the
    lock when the process ends, however it ends."""
    _runs_dir_ready(runs_dir)
    path = os.path.join(runs_dir, LOCK_FILE)
    f = _open_lock(path)
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise RunnerBusy(f"another 'luna-tui queue run' is working on this queue (pid "
                             f"{holder})", path) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


def runner_alive(runs_dir: str) -> bool:
    """Is a ``queue run`` working on this queue now (its lock held)?"""
    from luna_core.run.runlock import held_by

    return held_by(os.path.join(runs_dir, LOCK_FILE)) is not None


# --------------------------------------------------------------------------- adding

def expand_sweep(argv: list[str]) -> list[list[str]]:
    """``--lr 0.001,0.0003 --balanced 1,2`` → the four argvs of the grid (the first option's
    values vary slowest). A value without a comma stays as it is."""
    return [argv for argv, _label in sweep_grid(argv)]


def sweep_grid(argv: list[str]) -> list[tuple[list[str], str]]:
    """Each argv of the grid ``expand_sweep`` makes, with a label of the values that vary
    ('lr0.0003-balanced2'), for its run's name."""
    axes: list[list[list[str]]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if token.startswith("--") and "=" in token and "," in token.split("=", 1)[1]:
            name, values = token.split("=", 1)
            axes.append(_axis(name, values))
            i += 1
        elif token.startswith("--") and nxt is not None and not nxt.startswith("--") \
                and "," in nxt:
            axes.append(_axis(token, nxt))
            i += 2
        else:
            axes.append([[token]])
            i += 1
    varying = [k for k, axis in enumerate(axes) if len(axis) > 1]
    return [([t for part in combo for t in part],
             "-".join(_label(combo[k]) for k in varying))
            for combo in itertools.product(*axes)]


def _label(option_value: list[str]) -> str:
    """['--lr', '0.001'] -> 'lr0.001': a safe part of a folder name."""
    name, value = option_value
    return (name.lstrip("-") + value).replace("/", "_").replace("\\", "_")


def _axis(name: str, values: str) -> list[list[str]]:
    axis = [[name, v.strip()] for v in values.split(",") if v.strip()]
    if not axis:
        raise LunaInputError(f"--sweep: {name} {values!r} has no values")
    return axis


# --------------------------------------------------------------------------- running

@dataclass
class RunResult:
    exit_code: int
    run_dir: str | None
    reason: str


#: launch(argv, run_id, run_dir, started) runs one child to its end (``run_dir``: the folder a
#: resume goes on in; None: the child makes one); it calls started(pid, pid_created, run_dir)
#: when it knows the child's pid and again its run folder.
Launcher = Callable[[list[str], str, "str | None", Callable[..., None]], RunResult]

#: A child's exit when it was stopped by a signal (SIGHUP, SIGINT, SIGTERM: 128 + N after its
#: checkpoint; -N when the signal came before its handlers were in place).
STOP_EXIT_CODES = {129: "SIGHUP", 130: "SIGINT", 143: "SIGTERM",
                   -1: "SIGHUP", -2: "SIGINT", -15: "SIGTERM"}


def find_run_dir(runs_dir: str, run_id: str) -> str | None:
    """The run folder whose first ``run_started`` has ``run_id`` (a fresh attempt's)."""
    from luna_core.run import events as ev
    from luna_core.run.eventfile import EVENT_FILE_NAME, decode_line
    from luna_core.run.runs import find_run_dirs

    if not run_id:
        return None
    for d in find_run_dirs(runs_dir):
        try:
            with open(os.path.join(d, EVENT_FILE_NAME), encoding="utf-8") as f:
                started = decode_line(f.readline())
        except (OSError, ValueError, LunaInputError):
            continue
        if isinstance(started, ev.RunStarted) and started.run_id == run_id:
            return d
    return None


def pid_alive(pid: int | None, created: float | None, started: float | None) -> bool:
    """Is ``pid`` still the process the entry started (not a newer one with its number)?"""
    if not pid:
        return False
    if created is None:
        from luna_core.proc import process_alive

        return process_alive(pid, started)
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - created) < 1
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def entry_run_dir(runs_dir: str, entry: Entry) -> str | None:
    return entry.run_dir or find_run_dir(runs_dir, entry.run_id)


def previous_process(runs_dir: str, entry: Entry) -> str | None:
    """What still lives of the entry's last attempt (its run folder held, or its process),
    said in words; None when it is gone."""
    from luna_core.run import runlock

    run_dir = entry_run_dir(runs_dir, entry)
    if run_dir and runlock.in_use(run_dir):
        return f"its run {run_dir} ({runlock.describe_holder(run_dir)})"
    if pid_alive(entry.pid, entry.pid_created, entry.started):
        return f"its process (pid {entry.pid})"
    return None


def wait_for_previous(runs_dir: str, entry: Entry, say: Callable[[str], None],
                      poll: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                      should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Until the entry's previous process is gone: an orphan of a killed runner finishes (or
    stops, told by its parent's death) before its entry goes on. False: the runner was told
    to stop while it waited (the entry is left as it is)."""
    told = False
    while (what := previous_process(runs_dir, entry)) is not None:
        if should_stop():
            return False
        if not told:
            say(f"#{entry.id}: waiting for {what} to end before going on with it")
            told = True
        sleep(poll)
    return True


def run_state(run_dir: str | None) -> str | None:
    """The run's state from its files (finished, stopped, failed, crashed, running)."""
    if not run_dir:
        return None
    from luna_core.run.runs import read_run

    try:
        return read_run(run_dir).state
    except LunaInputError:
        return None


def resume_argv(entry: Entry, run_dir: str | None = None) -> list[str] | None:
    """How to go on with an interrupted entry: ``--resume RUN_DIR`` with its options, when
    the run got as far as a checkpoint; None to start it (again) from scratch."""
    run_dir = run_dir or entry.run_dir
    # the files, not the event file: a run killed between writing a checkpoint and its
    # event has the checkpoint (--resume takes the newest file there)
    ckpt_dir = os.path.join(run_dir or "", "checkpoints")
    if not run_dir or not os.path.isdir(ckpt_dir):
        return None
    if not any(name.endswith(".pt") and name != "best.pt" for name in os.listdir(ckpt_dir)):
        return None
    return [*entry.argv, "--resume", run_dir]


def _new_run_id(entry: Entry) -> str:
    return f"q{entry.id}a{entry.attempts + 1}-{uuid.uuid4().hex[:10]}"


def _start(runs_dir: str, entry: Entry, say: Callable[[str], None]) -> list[str] | None:
    """Mark ``entry`` running for a new attempt (under the edit lock); returns its argv, or
    None when there is nothing to run (its run had finished: marked done)."""
    argv = None
    if entry.state in (RUNNING, STOPPED):
        run_dir = entry_run_dir(runs_dir, entry)
        if run_state(run_dir) == "finished":
            entry.state, entry.run_dir, entry.reason = DONE, run_dir, ""
            entry.exit_code = entry.exit_code if entry.exit_code is not None else 0
            say(f"#{entry.id} done: its run had finished ({run_dir})")
            return None
        argv = resume_argv(entry, run_dir)
        if argv is None and entry.attempts:
            # interrupted before its first checkpoint: nothing to resume from
            say(f"#{entry.id}: no checkpoint to resume from: starting it again")
            entry.run_dir = None
        elif argv is not None:
            entry.run_dir = run_dir
    entry.run_id = _new_run_id(entry)
    entry.state, entry.started, entry.attempts = RUNNING, time.time(), entry.attempts + 1
    entry.reason, entry.exit_code, entry.pid, entry.pid_created = "", None, None, None
    return argv or list(entry.argv)


def _outcome(result: RunResult, run_dir: str | None) -> tuple[str, str]:
    """(state, reason) of an attempt that ended: a run stopped by a signal or by 'stop'
    (checkpointed, resumable) is stopped, not failed."""
    state = run_state(run_dir)
    signal_name = STOP_EXIT_CODES.get(result.exit_code)
    if state == "stopped" or (signal_name and state != "finished"):
        how = f"by {signal_name}" if signal_name else "by 'stop'"
        return STOPPED, f"stopped {how}; the queue halted ('luna-tui queue run' resumes it)"
    if result.exit_code == 0:
        return DONE, ""
    return FAILED, result.reason or f"exit {result.exit_code}"


def run_queue(runs_dir: str, launch: Launcher,
              tell: Callable[[str, str], None] = lambda event, message: None,
              say: Callable[[str], None] = print, poll: float = 0.5,
              should_stop: Callable[[], bool] = lambda: False) -> int:
    """Work through the queue until it is empty or halted (``queue stop``, or
    ``should_stop()``: the runner was told to stop); returns how many runs failed."""
    failures = 0
    with runner_lock(runs_dir):
        with editing(runs_dir) as q:
            q.halt = False
        while True:
            with editing(runs_dir) as q:
                if should_stop():
                    q.halt = True
                if q.halt:
                    say("queue halted ('luna-tui queue stop'); 'luna-tui queue run' goes on")
                    break
                entry = q.pending()
                if entry is None:
                    break
                seen = Entry(**asdict(entry))
            if seen.state in (RUNNING, STOPPED):    # never two processes for one entry
                wait_for_previous(runs_dir, seen, say, poll, should_stop=should_stop)
            with editing(runs_dir) as q:
                entry = next((e for e in q.entries if e.id == seen.id), None)
                if entry is None or entry.state != seen.state or q.halt or should_stop():
                    continue                # removed or changed meanwhile: look again
                argv = _start(runs_dir, entry, say)
                entry_id, run_id = entry.id, entry.run_id
                resumed_dir = entry.run_dir if argv and "--resume" in argv else None
            if argv is None:
                continue
            say(f"#{entry_id}: luna-tui --headless {shlex.join(argv)}")

            def started(pid: int, pid_created: float | None = None,
                        run_dir: str | None = None, _id=entry_id) -> None:
                with editing(runs_dir) as q:
                    e = next((e for e in q.entries if e.id == _id), None)
                    if e is None:
                        return
                    e.pid, e.pid_created = pid, pid_created
                    if run_dir:
                        e.run_dir = run_dir

            result = launch(argv, run_id, resumed_dir, started)
            with editing(runs_dir) as q:
                e = next((e for e in q.entries if e.id == entry_id), None)
                if e is None:             # removed by hand while it ran: keep going
                    continue
                e.ended, e.exit_code = time.time(), result.exit_code
                e.run_dir = result.run_dir or e.run_dir
                e.state, e.reason = _outcome(result, e.run_dir)
                if e.state == STOPPED:
                    q.halt = True
                elif e.state == FAILED:
                    failures += 1
                line = f"#{e.id} {e.state}" + (f": {e.reason}" if e.reason else "") + \
                    (f" ({e.run_dir})" if e.run_dir else "")
            say(line)
            tell("queue_entry_" + e.state, line)
        with editing(runs_dir) as q:
            left = sum(1 for e in q.entries if e.state in (QUEUED, STOPPED))
            done = sum(1 for e in q.entries if e.state == DONE)
            failed = sum(1 for e in q.entries if e.state == FAILED)
    summary = f"queue: {done} done, {failed} failed, {left} waiting"
    say(summary)
    tell("queue_done" if not left else "queue_halted", summary)
    return failures
