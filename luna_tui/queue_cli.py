"""`luna-tui queue add|ls|rm|move|run|stop`: the experiment queue (luna_core.run.queue) from
the command line. Runs are `luna-tui --headless` child processes, each a normal run folder
with its event file and control socket; their console output goes to
``RUNS_DIR/queue-logs/N.log``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from luna_core.errors import LunaInputError
from luna_core.run import queue as qu

USAGE = """luna-tui queue add [--sweep] [--preset ch12] [OPTIONS] [comment]
       luna-tui queue ls | rm N | move N up|down | run [--notify-cmd CMD] | stop
       (each with --runs-dir DIR; default: runs)"""


def _runs_dir(argv: list[str]) -> tuple[str, list[str]]:
    """--runs-dir out of argv (it belongs to the queue and to every run in it)."""
    rest, runs_dir, i = [], "runs", 0
    while i < len(argv):
        if argv[i] == "--runs-dir" and i + 1 < len(argv):
            runs_dir, i = argv[i + 1], i + 2
        elif argv[i].startswith("--runs-dir="):
            runs_dir, i = argv[i].split("=", 1)[1], i + 1
        else:
            rest.append(argv[i])
            i += 1
    return runs_dir, rest


def check_options(argv: list[str]) -> None:
    """The run's own parser, at once: a bad option is refused when queued (argparse's
    message, exit 2), not when the run would start."""
    from luna_core.train.options import build_parser

    parser = build_parser(prog="luna-tui queue add")
    parser.parse_args(argv)


def cmd_add(runs_dir: str, argv: list[str]) -> int:
    sweep = "--sweep" in argv
    argv = [a for a in argv if a != "--sweep"]
    preset = None
    if "--preset" in argv:
        k = argv.index("--preset")
        if k + 1 >= len(argv) or argv[k + 1] not in qu.PRESETS:
            print(f"luna-tui queue add: --preset takes one of {', '.join(qu.PRESETS)}",
                  file=sys.stderr)
            return 2
        preset = argv[k + 1]
        argv = argv[:k] + argv[k + 2:]
    grid = qu.expand_sweep(argv) if sweep else [argv]
    if preset:
        # the comment (each run's name) first: "--balanced NAME" would read NAME as a ratio
        grid = [[name, *a, *extra] for a in grid for name, extra in qu.PRESETS[preset]]
    for a in grid:
        if "--headless" in a or "--resume" in a:
            print("luna-tui queue add: queued runs are headless and start fresh: leave out "
                  "--headless and --resume", file=sys.stderr)
            return 2
        check_options(a)                      # SystemExit(2) on a bad option: nothing added
    with qu.editing(runs_dir) as q:
        added = [q.add(a) for a in grid]
    for e in added:
        print(f"queued #{e.id}: {e.describe()}")
    return 0


def cmd_ls(runs_dir: str) -> int:
    q = qu.load(runs_dir)
    if not q.entries:
        print(f"the queue under {runs_dir} is empty")
        return 0
    for e in q.entries:
        when = time.strftime("%m-%d %H:%M", time.localtime(e.ended or e.started or e.added))
        tail = f"  {e.run_dir}" if e.run_dir else ""
        why = f"  ({e.reason})" if e.reason else ""
        print(f"#{e.id:<3} {e.state:<8} {when}  {e.describe()}{tail}{why}")
    if q.halt:
        print("(halted: 'luna-tui queue run' goes on)")
    return 0


def cmd_rm(runs_dir: str, entry_id: int) -> int:
    with qu.editing(runs_dir) as q:
        e = q.get(entry_id)
        if e.state == qu.RUNNING:
            raise LunaInputError(f"#{entry_id} is running: 'luna-tui queue stop' first")
        q.entries.remove(e)
    print(f"removed #{entry_id}")
    return 0


def cmd_move(runs_dir: str, entry_id: int, where: str) -> int:
    with qu.editing(runs_dir) as q:
        e = q.get(entry_id)
        k = q.entries.index(e)
        j = k - 1 if where == "up" else k + 1
        if 0 <= j < len(q.entries):
            q.entries[k], q.entries[j] = q.entries[j], q.entries[k]
    return cmd_ls(runs_dir)


def cmd_stop(runs_dir: str) -> int:
    """Halt the queue; the run in progress checkpoints and stops (resumed by the next run)."""
    from luna_core.run.ctl import ctl

    with qu.editing(runs_dir) as q:
        q.halt = True
        current = next((e for e in q.entries if e.state == qu.RUNNING), None)
    if current is None or not current.run_dir:
        print("queue halted: no run in progress")
        return 0
    print(f"queue halted; stopping #{current.id} ({current.run_dir})")
    return ctl(current.run_dir, "stop", runs_dir)


# --------------------------------------------------------------------------- running

def find_run_dir(runs_dir: str, pid: int) -> str | None:
    """The run folder whose run_started names process ``pid``."""
    from luna_core.run import events as ev
    from luna_core.run.eventfile import EVENT_FILE_NAME, decode_line
    from luna_core.run.runs import find_run_dirs

    for d in find_run_dirs(runs_dir):
        try:
            with open(os.path.join(d, EVENT_FILE_NAME), encoding="utf-8") as f:
                first = f.readline()
        except OSError:
            continue
        try:
            started = decode_line(first)
        except LunaInputError:
            continue
        if isinstance(started, ev.RunStarted) and started.pid == pid:
            return d
    return None


def _reason(run_dir: str | None, log_path: str) -> str:
    """Why a run failed, in one line: its final event's error, else its last log line."""
    if run_dir:
        from luna_core.run.runs import read_run

        try:
            info = read_run(run_dir)
            if info.error:
                return info.error
        except LunaInputError:
            pass
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return lines[-1][-300:] if lines else ""
    except OSError:
        return ""


def launcher(runs_dir: str):
    def launch(argv: list[str], started) -> qu.RunResult:
        logs = os.path.join(runs_dir, "queue-logs")
        os.makedirs(logs, exist_ok=True)
        log_path = os.path.join(logs, f"{int(time.time() * 1000)}.log")
        cmd = [sys.executable, "-m", "luna_tui", "--headless", *argv, "--runs-dir", runs_dir]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        started(proc.pid)
        run_dir = None
        while proc.poll() is None:
            if run_dir is None:
                run_dir = find_run_dir(runs_dir, proc.pid)
                if run_dir:
                    started(proc.pid, run_dir)
            time.sleep(0.2)
        run_dir = run_dir or find_run_dir(runs_dir, proc.pid)
        code = proc.returncode
        return qu.RunResult(code, run_dir, "" if code == 0 else _reason(run_dir, log_path))
    return launch


def cmd_run(runs_dir: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="luna-tui queue run")
    parser.add_argument("--notify-cmd", default=None, metavar="CMD",
                        help="run CMD through the shell at each run's end and when the queue "
                             "is done (LUNA_EVENT, LUNA_MESSAGE in its environment)")
    args = parser.parse_args(argv)
    from luna_core.run.alerts import NotifySink

    notify = NotifySink(args.notify_cmd) if args.notify_cmd else None
    tell = notify.notify if notify else (lambda _event, _message: None)
    try:
        failures = qu.run_queue(runs_dir, launcher(runs_dir), tell,
                                say=lambda line: print(line, flush=True))
    finally:
        if notify is not None:
            notify.close()                # the last one ("queue_done") heard before exit
    return 1 if failures else 0


def queue_command(argv: list[str]) -> int:
    runs_dir, argv = _runs_dir(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("\nThe queue's file: RUNS_DIR/queue.json. 'add' takes the options of a run "
              "(luna-tui --help), checked at once; --sweep turns comma lists into a grid "
              "(--lr 0.001,0.0003 --balanced 1,2: four runs); --preset ch12 queues chapter "
              "12's experiments with the options given.")
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    try:
        if what == "add":
            return cmd_add(runs_dir, rest)
        if what == "ls":
            return cmd_ls(runs_dir)
        if what == "rm" and len(rest) == 1 and rest[0].isdigit():
            return cmd_rm(runs_dir, int(rest[0]))
        if what == "move" and len(rest) == 2 and rest[0].isdigit() and rest[1] in ("up",
                                                                                "down"):
            return cmd_move(runs_dir, int(rest[0]), rest[1])
        if what == "run":
            return cmd_run(runs_dir, rest)
        if what == "stop":
            return cmd_stop(runs_dir)
    except LunaInputError as exc:
        print(f"luna-tui queue: {exc}", file=sys.stderr)
        return 2
    print(f"luna-tui queue: unknown or incomplete command {' '.join(argv)!r}\n{USAGE}",
          file=sys.stderr)
    return 2
