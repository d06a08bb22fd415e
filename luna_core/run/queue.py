"""An experiment queue: runs to make one after another, headless, unattended; a run that fails
is marked with its one-line reason and the queue goes on.

The queue is one file, ``RUNS_DIR/queue.json``, rewritten atomically on every change::

    {"format": 1, "next_id": 4, "halt": false,
     "entries": [{"id": 1, "argv": ["--epochs", "3", "plain"], "state": "done",
                  "added": 1765000000.0, "started": ..., "ended": ..., "pid": 4242,
                  "run_dir": "runs/luna/2026-12-06_13.20.00-plain", "exit_code": 0,
                  "reason": ""}, ...]}

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``stopped`` (``queue stop``: the run
checkpointed, the queue halted; the next ``queue run`` resumes it). Only ``queue run`` starts
runs, and only one at a time: it holds ``RUNS_DIR/queue.lock`` with ``flock`` while it works,
a lock the kernel drops when the process dies, so a crashed or killed runner leaves none
behind. A runner that finds an entry ``running`` (its runner was killed: SIGKILL, a reboot)
resumes that run from its last checkpoint (``--resume RUN_DIR``) before anything else; an
entry is started from scratch at most once. No torch here: runs are child processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import time
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


def load(runs_dir: str) -> Queue:
    path = queue_path(runs_dir)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return Queue()
    except (OSError, ValueError) as exc:
        raise LunaInputError(f"not a readable queue file ({exc})", path) from None
    if data.get("format", 0) > FORMAT:
        raise LunaInputError(f"queue format {data['format']} is newer than this luna-tui "
                             f"reads ({FORMAT})", path)
    names = set(Entry.__dataclass_fields__)
    entries = [Entry(**{k: v for k, v in e.items() if k in names}) for e in data["entries"]]
    return Queue(entries, int(data.get("next_id", len(entries) + 1)),
                 bool(data.get("halt", False)))


def save(runs_dir: str, queue: Queue) -> None:
    os.makedirs(runs_dir, exist_ok=True)
    data = {"format": FORMAT, "next_id": queue.next_id, "halt": queue.halt,
            "entries": [asdict(e) for e in queue.entries]}
    with atomic_write(queue_path(runs_dir), text=True) as f:
        json.dump(data, f, indent=1)
        f.write("\n")


@contextlib.contextmanager
def editing(runs_dir: str) -> Iterator[Queue]:
    """The queue, changed and saved as one step (a short lock on the file beside it, so a
    runner's update and an `add` never lose each other's changes)."""
    os.makedirs(runs_dir, exist_ok=True)
    with open(os.path.join(runs_dir, ".queue.edit"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        queue = load(runs_dir)
        yield queue
        save(runs_dir, queue)


class RunnerBusy(LunaInputError):
    pass


@contextlib.contextmanager
def runner_lock(runs_dir: str) -> Iterator[None]:
    """Held while a runner works; a second runner is refused at once. The kernel drops the
    lock when the process ends, however it ends."""
    os.makedirs(runs_dir, exist_ok=True)
    path = os.path.join(runs_dir, LOCK_FILE)
    f = open(path, "a+")
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


# --------------------------------------------------------------------------- adding

def expand_sweep(argv: list[str]) -> list[list[str]]:
    """``--lr 0.001,0.0003 --balanced 1,2`` → the four argvs of the grid (the first option's
    values vary slowest). A value without a comma stays as it is."""
    axes: list[list[list[str]]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if token.startswith("--") and "=" in token and "," in token.split("=", 1)[1]:
            name, values = token.split("=", 1)
            axes.append([[name, v] for v in values.split(",") if v])
            i += 1
        elif token.startswith("--") and nxt is not None and not nxt.startswith("--") \
                and "," in nxt:
            axes.append([[token, v] for v in nxt.split(",") if v])
            i += 2
        else:
            axes.append([[token]])
            i += 1
    return [[t for part in combo for t in part] for combo in itertools.product(*axes)]


# --------------------------------------------------------------------------- running

@dataclass
class RunResult:
    exit_code: int
    run_dir: str | None
    reason: str


Launcher = Callable[[list[str], Callable[[int], None]], RunResult]


def resume_argv(entry: Entry) -> list[str] | None:
    """How to go on with an interrupted entry: ``--resume RUN_DIR`` with its options, when
    the run got as far as a checkpoint; None to start it (again) from scratch."""
    # the files, not the event file: a run killed between writing a checkpoint and its
    # event has the checkpoint (--resume takes the newest file there)
    ckpt_dir = os.path.join(entry.run_dir or "", "checkpoints")
    if not entry.run_dir or not os.path.isdir(ckpt_dir):
        return None
    if not any(name.endswith(".pt") and name != "best.pt" for name in os.listdir(ckpt_dir)):
        return None
    return [*entry.argv, "--resume", entry.run_dir]


def run_queue(runs_dir: str, launch: Launcher,
              tell: Callable[[str, str], None] = lambda event, message: None,
              say: Callable[[str], None] = print) -> int:
    """Work through the queue until it is empty or halted; returns how many runs failed."""
    failures = 0
    with runner_lock(runs_dir):
        with editing(runs_dir) as q:
            q.halt = False
        while True:
            with editing(runs_dir) as q:
                if q.halt:
                    say("queue halted ('luna-tui queue stop'); 'luna-tui queue run' goes on")
                    break
                entry = q.pending()
                if entry is None:
                    break
                argv = resume_argv(entry) if entry.state in (RUNNING, STOPPED) else None
                if argv is None:
                    if entry.state != QUEUED and entry.attempts:
                        # interrupted before its first checkpoint: nothing to resume from
                        say(f"#{entry.id}: no checkpoint to resume from: starting it again")
                    argv = entry.argv
                entry.state, entry.started, entry.attempts = RUNNING, time.time(), \
                    entry.attempts + 1
                entry.reason, entry.exit_code = "", None
                entry_id = entry.id
            say(f"#{entry_id}: luna-tui --headless {' '.join(argv)}")

            def started(pid: int, run_dir: str | None = None, _id=entry_id) -> None:
                with editing(runs_dir) as q:
                    e = q.get(_id)
                    e.pid = pid
                    if run_dir:
                        e.run_dir = run_dir

            result = launch(argv, started)
            with editing(runs_dir) as q:
                e = q.get(entry_id)
                e.ended, e.exit_code = time.time(), result.exit_code
                e.run_dir = result.run_dir or e.run_dir
                if result.exit_code == 0 and q.halt:
                    e.state, e.reason = STOPPED, "stopped by 'queue stop' (resumed next run)"
                elif result.exit_code == 0:
                    e.state = DONE
                else:
                    e.state, e.reason = FAILED, result.reason or f"exit {result.exit_code}"
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
