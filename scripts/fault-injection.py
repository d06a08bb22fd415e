#!/usr/bin/env python3
"""Fault injection against the run folder and the experiment queue (issue 28), rerunnable:

    .venv/bin/python scripts/fault-injection.py [--keep DIR] [--only N,N...]

Each case attacks real `luna-tui` processes (tiny CPU runs on a demo data set this script
writes once with `luna-tui synth`) and checks what the product does now. One line per case,
`PASS <case>` or `FAIL <case>: <what happened>`, then the total; exit 0 only when all pass.

Works in a fresh temporary folder, removed at the end (--keep DIR: work in DIR, a new or empty
folder, and leave it there, with every process's log). Every case has its own runs folder;
every wait polls a file, an event or a process with a deadline; every process started here
is started in its own session and killed (its whole process group) when its case ends.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
PY = [sys.executable, "-m", "luna_tui"]
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "PYTHONUNBUFFERED": "1"}
ENV.pop("COLUMNS", None)
HOST = socket.gethostname()
WAIT = 180.0                     # the longest any one wait may take (a loaded 2-core machine)


class Failure(Exception):
    """A case's expectation that did not hold (its message is the FAIL line's reason)."""


def check(condition, what: str) -> None:
    if not condition:
        raise Failure(what)


# ------------------------------------------------------------------------- processes

class Procs:
    """Every process a case started; ``kill_all`` ends their process groups (each started
    in a new session, so the group holds the process and whatever it started)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args, log: str, cwd: str | None = None) -> subprocess.Popen:
        with open(log, "w") as out:
            proc = subprocess.Popen([str(a) for a in args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd, env=ENV, start_new_session=True)
        proc.log = log
        self.started.append(proc)
        return proc

    def run(self, args, timeout: float = WAIT, cwd: str | None = None):
        """Run to the end: (exit code, stdout, stderr); killed and a Failure past timeout."""
        proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                cwd=cwd, env=ENV, start_new_session=True)
        self.started.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.communicate()
            raise Failure(f"timed out after {timeout:.0f}s: {short(args)}") from None
        return proc.returncode, out, err

    def kill_all(self) -> None:
        for proc in self.started:
            kill_group(proc.pid)
        for proc in self.started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.started.clear()


def group_members(pgid: int) -> list[int]:
    """The live processes of the group (and session) ``pgid`` that this script made."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getpgid(pid) == pgid and os.getsid(pid) == pgid:
                members.append(pid)
        except OSError:
            pass
    return members


def kill_group(pgid: int) -> None:
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def short(args) -> str:
    text = " ".join(str(a) for a in args)
    return text if len(text) < 200 else text[:200] + "..."


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][-240:] if lines else "(no output)"


def log_tail(proc) -> str:
    try:
        with open(proc.log, encoding="utf-8", errors="replace") as f:
            return last_line(f.read())
    except (OSError, AttributeError):
        return "(no log)"


def wait_until(predicate, what: str, timeout: float = WAIT, must_live=(), poll=0.05):
    """Poll ``predicate`` until it returns a true value (returned), or fail: past the
    deadline, or when a process of ``must_live`` ended first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in must_live:
            if proc.poll() is not None:
                raise Failure(f"{short(proc.args[2:5])}... ended (exit {proc.returncode}) "
                              f"before {what}: {log_tail(proc)}")
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def wait_exit(proc, what: str, timeout: float = WAIT) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {timeout:.0f}s waiting for {what} to exit: "
                      f"{log_tail(proc)}") from None


# ------------------------------------------------------------------------- run folders

def read_events(run_dir: str) -> list[dict]:
    """The event file's whole lines as records (a partial last line is left out)."""
    try:
        with open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8",
                  errors="replace") as f:
            data = f.read()
    except OSError:
        return []
    lines = data.split("\n")[:-1]          # the piece after the last newline: not whole
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def kinds(run_dir: str, *wanted: str) -> list[str]:
    return [r.get("kind") for r in read_events(run_dir) if r.get("kind") in wanted]


def run_dirs(runs: str, comment: str = "*") -> list[str]:
    """The run folders under RUNS/luna (not the TensorBoard ones)."""
    return sorted(d for d in glob.glob(os.path.join(runs, "luna", f"*-{comment}"))
                  if os.path.isdir(d) and "_cls-" not in os.path.basename(d))


def is_paused(run_dir: str) -> bool:
    return any(r.get("kind") == "status" and r.get("state") == "paused"
               for r in read_events(run_dir))


def queue_entries(runs: str) -> list[dict]:
    try:
        with open(os.path.join(runs, "queue.json")) as f:
            return json.load(f)["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return []          # not there yet, or being replaced


def tree(root: str, skip: str) -> set[str]:
    """Every path under root, but for skip and what is under it."""
    skip = os.path.abspath(skip)

    def outside(path: str) -> bool:
        path = os.path.abspath(path)
        return path != skip and not path.startswith(skip + os.sep)

    found = set()
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if outside(os.path.join(here, d))]
        found.update(os.path.join(here, n) for n in dirs + files
                     if outside(os.path.join(here, n)))
    return found


def load_model(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: str, b: str) -> str | None:
    """None when the two checkpoints' models are equal tensor by tensor, else why not."""
    import torch

    mine, theirs = load_model(a), load_model(b)
    if mine.keys() != theirs.keys():
        return f"different tensors: {sorted(mine.keys() ^ theirs.keys())[:3]}"
    differ = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    return f"{len(differ)} of {len(mine)} tensors differ (first: {differ[0]})" if differ \
        else None


# ------------------------------------------------------------------------- the cases

class Ctx:
    """What every case gets: its own folder, the data set, and its processes."""

    def __init__(self, root: str, name: str, data: str, cache: str) -> None:
        self.root, self.data, self.cache = root, data, cache
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.runs = os.path.join(self.dir, "runs")
        self.procs = Procs()
        self._logs = 0

    def tiny(self, *extra) -> list[str]:
        return ["--data-dir", self.data, "--cache-dir", self.cache, "--num-workers", "0",
                "--batch-size", "8", "--device", "cpu", "--threads", "1",
                "--froc-bootstrap", "0", "--max-batches", "2", *extra]

    def log(self, what: str) -> str:
        self._logs += 1
        return os.path.join(self.dir, f"{self._logs:02d}-{what}.log")

    def start(self, args, what: str, cwd=None):
        return self.procs.start(args, self.log(what), cwd=cwd)

    def run(self, args, timeout: float = WAIT, cwd=None):
        return self.procs.run(args, timeout, cwd)

    def ok(self, args, what: str, timeout: float = WAIT, cwd=None) -> tuple[str, str]:
        code, out, err = self.run(args, timeout, cwd)
        check(code == 0, f"{what}: exit {code}, expected 0: {last_line(err or out)}")
        return out, err

    def pause(self, run_dir: str, runs: str, must_live=()) -> None:
        """`luna-tui ctl RUN pause`, then its status event 'paused'."""
        code, out, err = self.run([*PY, "ctl", run_dir, "pause", "--runs-dir", runs,
                                   "--wait", "120"], timeout=150)
        if code != 0:
            ended = kinds(run_dir, "run_finished")
            raise Failure(f"ctl pause: exit {code}: {last_line(err or out)}"
                          + (" (the run had already finished: the script's run is too "
                             "short for this machine)" if ended else ""))
        wait_until(lambda: is_paused(run_dir), "the 'paused' status event",
                   must_live=must_live)


REFERENCE: dict[str, str] = {}
QUEUED_RUN = ("--epochs", "8", "--seed", "5")
LAST = "e008-end.pt"


def reference(ctx: Ctx) -> str:
    """The final checkpoint of an uninterrupted run with the queued options (made once)."""
    if "path" not in REFERENCE:
        runs = os.path.join(ctx.root, "reference-runs")
        ctx.ok([*PY, "--headless", *ctx.tiny(*QUEUED_RUN), "--runs-dir", runs],
               "the uninterrupted reference run")
        (run_dir,) = run_dirs(runs)
        REFERENCE["path"] = os.path.join(run_dir, "checkpoints", LAST)
    return REFERENCE["path"]


def killed_runner(ctx: Ctx, signum: int) -> None:
    """Cases 1 and 2: the runner is killed (signum) while its child is paused mid-run."""
    ref = reference(ctx)
    runs = ctx.runs
    ctx.ok([*PY, "queue", "add", "--runs-dir", runs, *ctx.tiny(*QUEUED_RUN)], "queue add")
    runner = ctx.start([*PY, "queue", "run", "--runs-dir", runs], "runner")
    run_dir = wait_until(lambda: (queue_entries(runs) or [{}])[0].get("run_dir"),
                         "the entry's run_dir in queue.json", must_live=[runner])
    ctx.pause(run_dir, runs, must_live=[runner])
    child = queue_entries(runs)[0]["pid"]
    check(alive(child), f"the child (pid {child}) is not alive while paused")
    os.kill(runner.pid, signum)                     # the runner alone, not its group
    code = wait_exit(runner, "the runner")
    if signum == signal.SIGKILL:
        check(code == -signal.SIGKILL, f"the runner's exit {code}, expected -9")
    wait_until(lambda: kinds(run_dir, "run_started", "run_finished")[-1:] == ["run_finished"],
               "the child's own run_finished (a stop with a checkpoint)")
    finished = [r for r in read_events(run_dir) if r.get("kind") == "run_finished"][-1]
    check(finished.get("state") == "stopped" and finished.get("exit_code") == 143,
          f"the child's run_finished has state {finished.get('state')!r}, exit_code "
          f"{finished.get('exit_code')!r}; expected 'stopped', 143")
    wait_until(lambda: not alive(child), f"the child (pid {child}) to exit")
    (entry,) = queue_entries(runs)
    if signum == signal.SIGTERM:
        check(code == 0, f"the runner's exit {code} after SIGTERM, expected 0: "
                         f"{log_tail(runner)}")
        check(entry["state"] == "stopped", f"after SIGTERM the entry is "
                                           f"{entry['state']!r}, expected 'stopped'")
        with open(os.path.join(runs, "queue.json")) as f:
            check(json.load(f).get("halt") is True, "the queue is not halted after SIGTERM")
    again = ctx.run([*PY, "queue", "run", "--runs-dir", runs], timeout=WAIT)
    check(again[0] == 0, f"the second queue run: exit {again[0]}: "
                         f"{last_line(again[2] or again[1])}")
    (entry,) = queue_entries(runs)
    check(entry["state"] == "done" and entry["attempts"] == 2,
          f"the entry is {entry['state']!r} after {entry['attempts']} attempts, expected "
          f"'done' after 2")
    check(run_dirs(runs) == [run_dir], f"run folders {run_dirs(runs)}, expected [{run_dir}]")
    order = kinds(run_dir, "run_started", "run_finished")
    check(order == ["run_started", "run_finished"] * 2,
          f"run_started/run_finished in the event file: {order}")
    last = os.path.join(run_dir, "checkpoints", LAST)
    check(os.path.exists(last), f"no {LAST} in the resumed run")
    why = same_weights(last, ref)
    check(why is None, f"the resumed run's {LAST} is not the uninterrupted run's: {why}")


def case_sigkill_runner(ctx: Ctx) -> None:
    killed_runner(ctx, signal.SIGKILL)


def case_sigterm_runner(ctx: Ctx) -> None:
    killed_runner(ctx, signal.SIGTERM)


def live_paused_run(ctx: Ctx, wait_for: str = "run_started") -> tuple[subprocess.Popen, str]:
    """A headless run with epochs to spare, paused via ctl once its event file has an event
    of kind ``wait_for``; (its process, its folder)."""
    proc = ctx.start([*PY, "--headless", *ctx.tiny("--epochs", "1000"), "--runs-dir",
                      ctx.runs], "live-run")
    run_dir = wait_until(lambda: next((d for d in run_dirs(ctx.runs)
                                       if kinds(d, wait_for)), None),
                         f"the run's {wait_for} event", must_live=[proc])
    ctx.pause(run_dir, ctx.runs, must_live=[proc])
    return proc, run_dir


def case_resume_live_run(ctx: Ctx) -> None:
    # paused after its first checkpoint: a run folder with nothing to resume from is refused
    # for that before its lock is looked at ("no checkpoints in this run directory")
    proc, run_dir = live_paused_run(ctx, wait_for="checkpoint")
    events = os.path.join(run_dir, "events.jsonl")
    with open(events, "rb") as f:
        before = f.read()
    code, out, err = ctx.run([*PY, "--headless", *ctx.tiny("--epochs", "1001"), "--runs-dir",
                              ctx.runs, "--resume", run_dir])
    check(code == 2, f"--resume of a live run: exit {code}, expected 2: {last_line(err)}")
    check(f"pid {proc.pid}" in err and HOST in err,
          f"stderr does not name pid {proc.pid} on {HOST}: {last_line(err)}")
    check("Traceback" not in err, "a traceback on stderr")
    with open(events, "rb") as f:
        check(f.read() == before, "the live run's event file changed")
    check(proc.poll() is None, "the live run ended")


def case_same_comment_at_once(ctx: Ctx) -> None:
    procs = [ctx.start([*PY, "--headless", *ctx.tiny("--epochs", "1"), "--runs-dir",
                        ctx.runs, "same"], f"same-{k}") for k in range(3)]
    for k, proc in enumerate(procs):
        code = wait_exit(proc, f"run {k + 1} of 3")
        check(code == 0, f"run {k + 1} of 3: exit {code}: {log_tail(proc)}")
    folders = run_dirs(ctx.runs, "same")
    check(len(folders) == 3, f"{len(folders)} run folders, expected 3: "
                             f"{[os.path.basename(d) for d in folders]}")
    for d in folders:
        starts = [r for r in read_events(d) if r.get("kind") == "run_started"]
        check(len(starts) == 1 and os.path.realpath(starts[0]["run_dir"]) ==
              os.path.realpath(d), f"{d}: {len(starts)} run_started, not its own one")


def case_traversal(ctx: Ctx) -> None:
    before = tree(ctx.root, skip=ctx.runs)
    x_before = os.path.exists("/X")
    for bad in (["/../X"], ["a/b"], ["--tb-prefix", "../../x"]):
        code, out, err = ctx.run([*PY, "--headless", *ctx.tiny("--epochs", "1"),
                                  "--runs-dir", ctx.runs, *bad], cwd=ctx.dir)
        check(code == 2, f"{' '.join(bad)}: exit {code}, expected 2: {last_line(err or out)}")
        check("Traceback" not in err, f"{' '.join(bad)}: a traceback")
        made = tree(ctx.root, skip=ctx.runs) - before
        check(not made, f"{' '.join(bad)}: created outside the runs folder: {sorted(made)}")
        check(os.path.exists("/X") == x_before, "/X was created")


def case_examples_blocked(ctx: Ctx) -> None:
    proc = ctx.start([*PY, "--headless", *ctx.tiny("--epochs", "1"), "--runs-dir",
                      ctx.runs], "run")
    run_dir = wait_until(lambda: (run_dirs(ctx.runs) or [None])[0], "the run folder",
                         must_live=[proc], poll=0.005)
    path = os.path.join(run_dir, "examples")

    def block() -> bool:
        if os.path.isdir(path):
            check(not os.listdir(path), "the script was too late: examples were written "
                                        "before it could block the folder")
            os.rmdir(path)
        try:
            with open(path, "x") as f:
                f.write("in the way\n")
            return True
        except (FileExistsError, IsADirectoryError):
            return False

    wait_until(block, "a file in place of RUN/examples", timeout=30, poll=0.005)
    code = wait_exit(proc, "the run")
    check(code == 0, f"the run: exit {code}, expected 0: {log_tail(proc)}")
    check(os.path.exists(os.path.join(run_dir, "checkpoints", "e001-end.pt")),
          "no e001-end.pt")
    check(os.path.isfile(path), "RUN/examples is no longer the blocking file")
    finished = [r for r in read_events(run_dir) if r.get("kind") == "run_finished"]
    check(finished and finished[-1].get("state") == "finished",
          f"run_finished: {finished[-1:] or 'none'}")


def case_partial_event_line(ctx: Ctx) -> None:
    ctx.ok([*PY, "--headless", *ctx.tiny("--epochs", "1"), "--runs-dir", ctx.runs],
           "the first run")
    (run_dir,) = run_dirs(ctx.runs)
    events = os.path.join(run_dir, "events.jsonl")
    with open(events, "ab") as f:                      # killed in the middle of a line
        f.write(b'{"v": 1, "kind": "batch_done", "t": 17000')
    ctx.ok([*PY, "--headless", *ctx.tiny("--epochs", "2"), "--runs-dir", ctx.runs,
            "--resume", run_dir], "--resume --epochs 2")
    for verb in ("runs", "compare"):
        code, out, err = ctx.run([*PY, verb, run_dir, "--runs-dir", ctx.runs])
        check(code == 0, f"luna-tui {verb} RUN: exit {code}: {last_line(err or out)}")
        check("Traceback" not in err, f"luna-tui {verb} RUN: a traceback")
    with open(events, "rb") as f:
        data = f.read()
    check(data.endswith(b"\n"), "the event file does not end with a newline")
    for k, line in enumerate(data.splitlines(), 1):
        try:
            json.loads(line)
        except ValueError:
            raise Failure(f"events.jsonl line {k} is not JSON: {line[:60]!r}") from None


def case_queue_stop_at_start(ctx: Ctx) -> None:
    runs = ctx.runs
    ctx.ok([*PY, "queue", "add", "--runs-dir", runs, *ctx.tiny("--epochs", "1000")],
           "queue add")
    runner = ctx.start([*PY, "queue", "run", "--runs-dir", runs], "runner")
    wait_until(lambda: (queue_entries(runs) or [{}])[0].get("pid"), "the entry's pid",
               must_live=[runner], poll=0.01)
    out, _err = ctx.ok([*PY, "queue", "stop", "--runs-dir", runs], "queue stop")
    check("queue halted" in out, f"queue stop said: {last_line(out)}")
    code = wait_exit(runner, "the runner")
    check(code == 0, f"queue run: exit {code}, expected 0: {log_tail(runner)}")
    (entry,) = queue_entries(runs)
    check(entry["state"] == "stopped", f"the entry is {entry['state']!r}, expected 'stopped'")
    check(entry["exit_code"] in (143, -15), f"the child's exit {entry['exit_code']}")
    for d in run_dirs(runs):
        trained = [n for n in os.listdir(os.path.join(d, "checkpoints"))
                   if n.startswith("e002")] if os.path.isdir(os.path.join(d, "checkpoints")) \
            else []
        check(not trained, f"the child went on training: {trained}")


def case_help_acts_on_nothing(ctx: Ctx) -> None:
    runs = ctx.runs
    for name in ("one", "two"):
        ctx.ok([*PY, "queue", "add", "--runs-dir", runs, *ctx.tiny("--epochs", "1000"), name],
               "queue add")
    runner = ctx.start([*PY, "queue", "run", "--runs-dir", runs], "runner")
    run_dir = wait_until(lambda: (queue_entries(runs) or [{}])[0].get("run_dir"),
                         "the entry's run_dir", must_live=[runner])
    ctx.pause(run_dir, runs, must_live=[runner])
    queue_json = os.path.join(runs, "queue.json")
    with open(queue_json, "rb") as f:
        before = f.read()
    for verb in (["add", "--epochs", "3"], ["ls"], ["rm", "1"], ["move", "1", "up"], ["run"],
                 ["stop"]):
        code, out, err = ctx.run([*PY, "queue", *verb, "--help", "--runs-dir", runs])
        what = f"queue {' '.join(verb)} --help"
        check(code == 0, f"{what}: exit {code}: {last_line(err or out)}")
        check("usage" in out.lower(), f"{what}: no usage in its output")
        with open(queue_json, "rb") as f:
            check(f.read() == before, f"{what}: queue.json changed")
        check(runner.poll() is None, f"{what}: the runner ended")
    check(queue_entries(runs)[0]["state"] == "running", "the entry is no longer running")
    from luna_tui.cli import SUBCOMMANDS

    empty = os.path.join(ctx.dir, "empty")
    os.makedirs(empty)
    for name in SUBCOMMANDS:
        code, out, err = ctx.run([*PY, name, "--help"], cwd=empty)
        check(code == 0 and "usage" in out.lower(),
              f"luna-tui {name} --help: exit {code}: {last_line(err or out)}")
        check(os.listdir(empty) == [], f"luna-tui {name} --help created {os.listdir(empty)}")


def one_line_error(code: int, err: str, path: str, what: str, exact: bool = True) -> None:
    check(code == 2, f"{what}: exit {code}, expected 2: {last_line(err)}")
    check("Traceback" not in err, f"{what}: a traceback on stderr")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    naming = [ln for ln in lines if path in ln]
    check(naming, f"{what}: no stderr line names {path}: {last_line(err)}")
    if exact:
        check(len(lines) == 1, f"{what}: {len(lines)} stderr lines, expected 1")


def case_malformed_files(ctx: Ctx) -> None:
    runs = ctx.runs
    procs = [ctx.start([*PY, "--headless", *ctx.tiny("--epochs", "1"), "--runs-dir", runs,
                        name], name) for name in ("a", "b")]
    for proc in procs:
        code = wait_exit(proc, "a run")
        check(code == 0, f"a run: exit {code}: {log_tail(proc)}")
    (a,) = run_dirs(runs, "a")
    (b,) = run_dirs(runs, "b")
    # queue.json `[]`
    qruns = os.path.join(ctx.dir, "qruns")
    os.makedirs(qruns)
    qfile = os.path.join(qruns, "queue.json")
    with open(qfile, "w") as f:
        f.write("[]")
    code, out, err = ctx.run([*PY, "queue", "ls", "--runs-dir", qruns])
    one_line_error(code, err, qfile, "queue ls on queue.json []")
    # index.json of the wrong shape in one run of two
    with open(os.path.join(a, "index.json"), "w") as f:
        f.write('{"format":"1","events":[]}')
    code, out, err = ctx.run([*PY, "runs", "--runs-dir", runs, "--wide"])
    check(code == 0, f"runs with a bad index.json: exit {code}: {last_line(err)}")
    check(a in out and b in out, f"runs with a bad index.json does not list both: {out!r}")
    check("Traceback" not in err, "runs: a traceback")
    # an examples zip with a missing field
    zpath = os.path.join(b, "examples", "E001.zip")
    with zipfile.ZipFile(zpath) as z:
        meta = json.loads(z.read("examples.json"))
        raw = z.read("chunks.i16")
    check(meta.get("examples"), "the run kept no examples to spoil")
    meta["examples"][0].pop("loss")
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("examples.json", json.dumps(meta))
        z.writestr("chunks.i16", raw)
    code, out, err = ctx.run([*PY, "examples", b, "--runs-dir", runs])
    one_line_error(code, err, zpath, "examples of a zip with a missing field")
    # a truncated checkpoint, resumed
    ckpt = os.path.join(b, "checkpoints", "e001-end.pt")
    with open(ckpt, "rb") as f:
        whole = f.read()
    with open(ckpt, "wb") as f:
        f.write(whole[: len(whole) // 2])
    code, out, err = ctx.run([*PY, "--headless", *ctx.tiny("--epochs", "2"), "--runs-dir",
                              runs, "--resume", ckpt])
    one_line_error(code, err, ckpt, "--resume of a truncated checkpoint")
    # a garbage .mhd in a copy of the data set
    data = os.path.join(ctx.dir, "data-copy")
    shutil.copytree(ctx.data, data)
    mhd = sorted(glob.glob(os.path.join(data, "subset*", "*.mhd")))[0]
    with open(mhd, "wb") as f:
        f.write(random.Random(1).randbytes(5000))
    code, out, err = ctx.run([*PY, "check", "--data-dir", data, "--cache-dir",
                              os.path.join(ctx.dir, "cache-copy")])
    check(code == 2, f"check with a garbage .mhd: exit {code}: {last_line(err or out)}")
    check("Traceback" not in out + err, "check with a garbage .mhd: a traceback")
    check(mhd in out + err, f"check does not name {mhd}: {last_line(out + err)}")


REFUSED = (["--epochs", "0"], ["--lr", "nan"], ["--momentum", "2"], ["--resu", "X"],
           ["--resume=X"], ["--sweep", "--lr", ",,,"])


def case_queue_add_refusals(ctx: Ctx) -> None:
    runs = ctx.runs
    queue_json = os.path.join(runs, "queue.json")

    def refuse_all(before: bytes | None) -> None:
        for argv in REFUSED:
            code, out, err = ctx.run([*PY, "queue", "add", "--runs-dir", runs, *argv])
            what = f"queue add {' '.join(argv)}"
            check(code == 2, f"{what}: exit {code}, expected 2: {last_line(err or out)}")
            check("Traceback" not in err, f"{what}: a traceback")
            if before is None:
                check(not os.path.exists(queue_json), f"{what}: queue.json was written")
            else:
                with open(queue_json, "rb") as f:
                    check(f.read() == before, f"{what}: queue.json changed")

    refuse_all(None)
    ctx.ok([*PY, "queue", "add", "--runs-dir", runs, "--epochs", "1"], "a good queue add")
    with open(queue_json, "rb") as f:
        refuse_all(f.read())
    preset = os.path.join(ctx.dir, "preset-runs")
    ctx.ok([*PY, "queue", "add", "--runs-dir", preset, "--preset", "ch12", "--balanced", "3"],
           "queue add --preset ch12 --balanced 3")
    entries = queue_entries(preset)
    check(len(entries) == 8, f"{len(entries)} preset entries, expected 8")
    for e in entries:
        argv = e["argv"]
        check(argv.count("--balanced") == 1 and argv[argv.index("--balanced") + 1] == "3",
              f"entry #{e['id']} does not keep --balanced 3: {argv}")


def socket_request(path: str, line: bytes, timeout: float = 30.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in data:
            check(time.monotonic() < deadline, f"no reply to {line[:40]!r} in {timeout:.0f}s")
            chunk = s.recv(65536)
            check(chunk, f"the socket closed without a reply to {line[:40]!r}")
            data += chunk
    try:
        return json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise Failure(f"a reply that is not JSON: {data[:80]!r}") from None


def case_control_socket(ctx: Ctx) -> None:
    proc, run_dir = live_paused_run(ctx)
    started = next(r for r in read_events(run_dir) if r.get("kind") == "run_started")
    path = started.get("control_socket")
    check(path and os.path.exists(path), f"no control socket at {path!r}")
    reply = socket_request(path, b'{"command":"set","lr":1' + b"0" * 399 + b"}\n")
    check(reply.get("ok") is False, f"the 400-digit lr got {reply}")
    reply = socket_request(path, b'{"command":"pause"}\n')
    check(reply.get("ok") is True, f"the next request on a new connection got {reply}")
    check(proc.poll() is None, f"the run ended (exit {proc.returncode}): {log_tail(proc)}")


CASES = [
    ("1 runner-sigkill-mid-run", case_sigkill_runner),
    ("2 runner-sigterm-mid-run", case_sigterm_runner),
    ("3 resume-of-a-live-run", case_resume_live_run),
    ("4 same-comment-at-once", case_same_comment_at_once),
    ("5 traversal", case_traversal),
    ("6 examples-unwritable", case_examples_blocked),
    ("7 partial-event-line", case_partial_event_line),
    ("8 queue-stop-at-start", case_queue_stop_at_start),
    ("9 help-acts-on-nothing", case_help_acts_on_nothing),
    ("10 malformed-files", case_malformed_files),
    ("11 queue-add-refusals", case_queue_add_refusals),
    ("12 control-socket", case_control_socket),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="work in DIR (new or empty) and leave it there")
    parser.add_argument("--only", default=None, metavar="N,N",
                        help="run only these cases (their numbers)")
    args = parser.parse_args()
    if args.keep:
        root = os.path.abspath(args.keep)
        os.makedirs(root, exist_ok=True)
        if os.listdir(root):
            parser.error(f"--keep {args.keep}: not empty")
    else:
        root = tempfile.mkdtemp(prefix="luna-fault-")
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    t0 = time.monotonic()
    results: list[bool] = []
    try:
        data, cache = os.path.join(root, "data"), os.path.join(root, "cache")
        setup = Procs()
        try:
            for argv in (["synth", "--out", data, "--series", "4", "--seed", "1", "--size-xy",
                          "64", "--slices", "20", "28", "--negatives-per-series", "12",
                          "--nodules", "1", "2", "-q"],
                         ["prepcache", "--data-dir", data, "--cache-dir", cache,
                          "--num-workers", "0"]):
                code, out, err = setup.run([*PY, *argv])
                if code != 0:
                    print(f"setup failed: luna-tui {argv[0]}: exit {code}: "
                          f"{last_line(err or out)}")
                    return 1
        finally:
            setup.kill_all()
        for name, case in CASES:
            if only and name.split()[0] not in only:
                continue
            ctx = Ctx(root, "case" + name.replace(" ", "-"), data, cache)
            try:
                case(ctx)
            except Failure as exc:
                results.append(False)
                print(f"FAIL {name}: {exc}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the script's own trouble, said in one line
                results.append(False)
                why = traceback.format_exception_only(type(exc), exc)[-1].strip()
                print(f"FAIL {name}: {why}", flush=True)
            else:
                results.append(True)
                print(f"PASS {name}", flush=True)
            finally:
                ctx.procs.kill_all()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    passed = sum(results)
    print(f"{passed} of {len(results)} passed in {time.monotonic() - t0:.0f}s"
          + (f" (kept in {root})" if args.keep else ""))
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
