"""`luna-tui queue add|ls|rm|move|run|stop`: the experiment queue (luna_core.run.queue) from
the command line. The verb is picked by hand (--runs-dir may come anywhere, and add takes a
run's own options); a verb given --help only prints its help. Runs are `luna-tui --headless`
child processes, each a normal run folder with its event file and control socket; their
console output goes to ``RUNS_DIR/queue-logs/TIME-qNaM-ID.log`` (entry N, attempt M)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from luna_core.errors import LunaInputError
from luna_core.run import queue as qu
from luna_core.run.cost import WARN_HOURS
from luna_core.run.estimate import format_duration

USAGE = """usage: luna-tui queue add [--sweep] [--preset ch12] [OPTIONS] [comment]
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


def check_options(argv: list[str], runs_dir: str) -> None:
    """The run's own parser and the run's own checks after parsing (one function, shared
    with the run: luna_core.train.options.validate_options), at once: a bad option is
    refused when queued (argparse's message, exit 2), not when the run would start."""
    from luna_core.train.options import parse_options

    parse_options([*argv, "--runs-dir", runs_dir], prog="luna-tui queue add")


def _asks_resume(argv: list[str]) -> bool:
    """--resume in any spelling argparse takes (--resume=X, --resu X ...)."""
    from luna_core.train.options import given_resume

    return given_resume(argv)


def _with_preset(argv: list[str], extra: list[str]) -> list[str]:
    """A preset entry's options after the user's; an option the user gave keeps the user's
    value (the preset's own is left out). The presets' options are single tokens."""
    from luna_core.train.options import build_parser, parse_options

    _options, given = parse_options(argv, disk=False)   # the names given, any spelling
    dest = {o: a.dest for a in build_parser()._actions for o in a.option_strings}
    return [*argv, *(t for t in extra if dest.get(t.split("=", 1)[0]) not in given)]


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
    from luna_core.train.options import split_comment

    grid = []
    for a, label in (qu.sweep_grid(argv) if sweep else [(argv, "")]):
        comment, rest = split_comment(a)
        # each run named by its comment, the preset's name and the sweep's values; the
        # name first: "--balanced NAME" would read NAME as a ratio
        for name, extra in (qu.PRESETS[preset] if preset else [(None, [])]):
            parts = [p for p in (comment, name, label) if p]
            rest_now = _with_preset(rest, _scaled(rest, extra)) if preset else rest
            grid.append(["-".join(parts), *rest_now] if parts else rest_now)
    if not grid:
        raise LunaInputError("nothing to queue (an empty --sweep)")
    for a in grid:
        if "--headless" in a or _asks_resume(a):
            print("luna-tui queue add: queued runs are headless and start fresh: leave out "
                  "--headless and --resume", file=sys.stderr)
            return 2
        check_options(a, runs_dir)            # SystemExit(2) on a bad option: nothing added
    with qu.editing(runs_dir) as q:
        added = [q.add(a) for a in grid]
    total = 0.0
    for e in added:
        print(f"queued #{e.id}: {e.describe()}")
        cost, why = _cost(e.argv, runs_dir)
        if cost is None:
            print(f"  no estimate: {why}")
        else:
            print(f"  {cost.line()}")
            total += cost.seconds
    if len(added) > 1 and total:
        print(f"in all about {format_duration(total)}")
    if total > WARN_HOURS * 3600:
        print(f"luna-tui queue add: warning: these {len(added)} run(s) take about "
              f"{format_duration(total)} here (more than {WARN_HOURS:g} h); fewer "
              f"--epochs or --epoch-samples, or 'luna-tui queue rm ID'", file=sys.stderr)
    return 0


def _training_rows(options) -> int:
    """The training candidates of the data set the parsed options name (0 when it cannot
    be read)."""
    from luna_core.run.cost import count_rows, split_rows

    try:
        _ann, cand = _csv_paths(options)
    except LunaInputError:
        return 0
    return split_rows(count_rows(str(cand)), options.val_stride)[0]


def _csv_paths(options):
    from luna_core.data.candidates import csv_paths

    return csv_paths(options.data_dir, options.candidates_file)


def _scaled(argv: list[str], extra: list[str]) -> list[str]:
    """A preset's balanced entry with its epoch scaled to the data set (the book's 200,000
    only where there are that many training candidates) unless argv sets --epoch-samples."""
    from luna_core.run.cost import BALANCED_EPOCH_SAMPLES, scaled_epoch_samples
    from luna_core.train.options import parse_options

    if "--balanced" not in extra:
        return extra
    options, given = parse_options(argv, disk=False)
    if "epoch_samples" in given:
        return extra
    scaled = scaled_epoch_samples(_training_rows(options))
    if scaled is None or scaled >= BALANCED_EPOCH_SAMPLES:
        return extra
    return [*extra, f"--epoch-samples={scaled}"]


def _cost(argv: list[str], runs_dir: str):
    """(Cost, None), or (None, why there is none)."""
    from luna_core.run.cost import estimate
    from luna_core.run.runs import this_host
    from luna_core.train.options import parse_options

    options, _given = parse_options([*argv, "--runs-dir", runs_dir], disk=False)
    try:
        _ann, cand = _csv_paths(options)
    except LunaInputError as exc:
        return None, str(exc)
    return estimate(options, runs_dir, this_host(), str(cand)), None


def ls_lines(entries, width: int) -> list[str]:
    """Each entry in lines of at most ``width`` columns: '#N state time name', then its run
    folder, its options and why it ended, each indented and cut to fit (nothing wraps)."""
    from luna_core.run.listing import elide_run
    from luna_core.train.options import split_comment

    width = max(40, width)
    out = []
    for e in entries:
        when = time.strftime("%m-%d %H:%M", time.localtime(e.ended or e.started or e.added))
        comment, rest = split_comment(e.argv)
        head = f"#{e.id:<3} {e.state:<8} {when}  "
        out.append(head + elide_run(comment or "(no comment)", width - len(head)))
        pad = " " * 5
        if e.run_dir:
            out.append(pad + elide_run(e.run_dir, width - len(pad)))
        for text in (" ".join(rest) or "(the defaults)", *([f"({e.reason})"] if e.reason else [])):
            out.append(pad + (text if len(pad + text) <= width
                              else text[:width - len(pad) - 1] + "…"))
    return out


def cmd_ls(runs_dir: str) -> int:
    q = qu.load(runs_dir)
    if not q.entries:
        print(f"the queue under {runs_dir} is empty")
        return 0
    fits = sys.stdout.isatty() or "COLUMNS" in os.environ     # piped: whole lines
    width = shutil.get_terminal_size((80, 24)).columns if fits else 10_000
    for line in ls_lines(q.entries, width):
        print(line)
    if q.halt:
        print("(halted: 'luna-tui queue run' goes on)")
    return 0


def cmd_rm(runs_dir: str, entry_id: int) -> int:
    qu.remove(runs_dir, entry_id)
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
    """Halt the queue: its runner stops the run in progress (SIGTERM: a checkpoint at the
    next batch boundary, even while the run starts up) and ends; the next 'queue run' resumes
    it. With no runner working there is nothing to stop, and nothing is written."""
    if not qu.runner_alive(runs_dir):
        print(f"no 'luna-tui queue run' is working on {runs_dir}: nothing to stop")
        return 0
    with qu.editing(runs_dir) as q:
        q.halt = True
        current = next((e for e in q.entries if e.state == qu.RUNNING), None)
    if current is None:
        print("queue halted: it starts no further run")
    else:
        where = f" ({current.run_dir})" if current.run_dir else " (starting up)"
        print(f"queue halted; #{current.id}{where} stops at its next batch boundary with a "
              f"checkpoint ('luna-tui queue run' resumes it)")
    return 0


# --------------------------------------------------------------------------- running

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


def _created(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _tee(pipe, log, echo) -> threading.Thread:
    """Copy the child's output to its log file, and each line to ``echo`` too."""
    def copy() -> None:
        with pipe:
            for line in iter(pipe.readline, ""):
                log.write(line)
                log.flush()
                echo(line.rstrip("\n"))
    thread = threading.Thread(target=copy, name="queue-run-output", daemon=True)
    thread.start()
    return thread


def launcher(runs_dir: str, stopping: threading.Event | None = None, poll: float = 0.2,
             echo=None):
    """Runs each entry as ``luna-tui --headless`` with its run id, and stops it (SIGTERM: a
    checkpoint, then exit 143) when the queue is halted or the runner is told to stop.
    ``echo``: a function that also gets each line the run writes (`luna-tui demo`)."""
    stopping = stopping or threading.Event()

    def launch(argv: list[str], run_id: str, run_dir: str | None, started) -> qu.RunResult:
        from luna_core.run.parentwatch import PARENT_ENV

        logs = os.path.join(runs_dir, "queue-logs")
        try:
            os.makedirs(logs, exist_ok=True)
        except OSError as exc:
            raise LunaInputError(f"cannot create the queue's log folder: "
                                 f"{exc.strerror or exc}", logs) from None
        # when and which entry and attempt: 2026-12-07_14.50.11-q3a1-5f0c2e9a1b.log
        log_path = os.path.join(logs, f"{time.strftime('%Y-%m-%d_%H.%M.%S')}-{run_id}.log")
        cmd = [sys.executable, "-m", "luna_tui", "--headless", *argv, "--runs-dir", runs_dir]
        env = {**os.environ, "LUNA_RUN_ID": run_id, PARENT_ENV: str(os.getpid())}
        log = open(log_path, "w")       # noqa: SIM115 (closed below, after the tee)
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if echo else log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, text=True if echo else None)
        except BaseException:
            log.close()
            raise
        tee = _tee(proc.stdout, log, echo) if echo else None
        started(proc.pid, _created(proc.pid), run_dir)
        told = False
        while proc.poll() is None:
            if run_dir is None:                 # a fresh run: found by its run id
                run_dir = qu.find_run_dir(runs_dir, run_id)
                if run_dir:
                    started(proc.pid, _created(proc.pid), run_dir)
            if not told and (stopping.is_set() or _halted(runs_dir)):
                proc.send_signal(signal.SIGTERM)   # a clean stop, also while it starts up
                told = True
            stopping.wait(poll) if not told else time.sleep(poll)
        if tee is not None:
            tee.join(5.0)
        log.close()
        run_dir = run_dir or qu.find_run_dir(runs_dir, run_id)
        code = proc.returncode
        return qu.RunResult(code, run_dir, "" if code == 0 else _reason(run_dir, log_path))
    return launch


def _halted(runs_dir: str) -> bool:
    try:
        return qu.load(runs_dir).halt
    except LunaInputError:
        return False


def cmd_run(runs_dir: str, argv: list[str]) -> int:
    args = _verb_parser("run").parse_args(argv)
    from luna_core.run.alerts import NotifySink

    notify = NotifySink(args.notify_cmd) if args.notify_cmd else None
    tell = notify.notify if notify else (lambda _event, _message: None)
    stopping = threading.Event()

    def on_signal(signum, _frame):
        # the run in progress is stopped with a checkpoint and marked stopped; the queue halts
        if not stopping.is_set():
            os.write(2, f"{signal.Signals(signum).name}: stopping the run in progress with a "
                        f"checkpoint; 'luna-tui queue run' resumes it\n".encode())
        stopping.set()

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if signum != signal.SIGHUP or signal.getsignal(signum) is signal.SIG_DFL}
    try:
        failures = qu.run_queue(runs_dir, launcher(runs_dir, stopping), tell,
                                say=lambda line: print(line, flush=True),
                                should_stop=stopping.is_set)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if notify is not None:
            notify.close()                # the last one ("queue_done") heard before exit
    return 1 if failures else 0


# --------------------------------------------------------------------------- the verbs

VERB_HELP = {
    "add": "queue runs: the options of a run (luna-tui --help), checked at once",
    "ls": "list the queue's entries with their state, run folder and reason",
    "rm": "remove entry N (not while it runs: 'queue stop' first)",
    "move": "move entry N up or down",
    "run": "work through the queue, one headless run at a time (resumes an interrupted "
           "entry first)",
    "stop": "halt the queue: the run in progress stops with a checkpoint (resumed by the "
            "next 'queue run')",
}


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"luna-tui queue {verb}",
                                     description=VERB_HELP[verb].capitalize() + ".")
    parser.add_argument("--runs-dir", default="runs",
                        help="the runs folder that holds the queue (default: runs)")
    if verb in ("rm", "move"):
        parser.add_argument("entry", type=int, metavar="N")
    if verb == "move":
        parser.add_argument("where", choices=("up", "down"))
    if verb == "run":
        parser.add_argument("--notify-cmd", default=None, metavar="CMD",
                            help="run CMD through the shell at each run's end and when the "
                                 "queue is done (LUNA_EVENT, LUNA_MESSAGE in its environment)")
    return parser


def _add_help() -> str:
    from luna_core.train.options import build_parser

    parser = build_parser(prog="luna-tui queue add")
    parser.usage = ("luna-tui queue add [--sweep] [--preset ch12] [--runs-dir DIR] [OPTIONS] "
                    "[comment]")
    parser.description = ("Queue a run (or a grid of them, or chapter 12's experiments) for "
                          "'luna-tui queue run': the trainer's options below, each run "
                          "headless, with its cost estimated here. --sweep, --preset and "
                          "--runs-dir are explained at the end.")
    text = parser.format_help()
    return (text + "\nqueue add also takes:\n  --sweep          comma lists become a grid "
            "(--lr 0.001,0.0003 --balanced 1,2: four runs)\n  --preset ch12    chapter 12's "
            "experiments, each with the options given (an option you give keeps your "
            "value)\n  --runs-dir DIR   the runs folder that holds the queue\n"
            "Queued runs are headless and start fresh: --headless and --resume are refused.\n")


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def build_parser() -> argparse.ArgumentParser:
    """The queue's own line: its usage and verbs, for `luna-tui queue --help`. Each verb has
    its parser (``_verb_parser``; add's is the run's own), and ``run`` picks the verb."""
    return argparse.ArgumentParser(
        prog="luna-tui queue", usage=USAGE.removeprefix("usage: "), add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n".join(f"  {verb:<5} {what}" for verb, what in VERB_HELP.items()),
        epilog="The queue's file: RUNS_DIR/queue.json. 'luna-tui queue VERB --help' for a "
               "verb's options.")


def run(argv: list[str]) -> int:
    runs_dir, argv = _runs_dir(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(build_parser().format_help(), end="")
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    if what in VERB_HELP and _wants_help(rest):      # --help never acts
        print(_add_help() if what == "add" else _verb_parser(what).format_help(), end="")
        return 0
    try:
        if what in VERB_HELP:
            qu.check_runs_dir(runs_dir, write=what != "ls")
        if what == "add":
            return cmd_add(runs_dir, rest)
        if what in ("ls", "stop") and not rest:
            return cmd_ls(runs_dir) if what == "ls" else cmd_stop(runs_dir)
        if what == "rm" and len(rest) == 1 and rest[0].isdigit():
            return cmd_rm(runs_dir, int(rest[0]))
        if what == "move" and len(rest) == 2 and rest[0].isdigit() and rest[1] in ("up",
                                                                                "down"):
            return cmd_move(runs_dir, int(rest[0]), rest[1])
        if what == "run":
            return cmd_run(runs_dir, rest)
    except LunaInputError as exc:
        print(f"luna-tui queue: {exc}", file=sys.stderr)
        return 2
    print(f"luna-tui queue: unknown or incomplete command {shlex.join(argv)!r}\n{USAGE}",
          file=sys.stderr)
    return 2
