"""The queue under attack (issue 28): a killed runner's child stops with it and its entry is
never trained twice at once; an entry's run folder is found by its run id; `queue stop`
reaches a child that is starting up; a child stopped by a signal is `stopped`, not `failed`;
`--help` on every verb acts on nothing; a queue file of the wrong shape is one line; `queue
add` refuses what the run would refuse.

Machine-independent by construction: states, files, exit codes, the order of events; the
runs whose weights are compared ran on this machine (the same computation in one order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run import queue as qu
from luna_core.run.eventfile import read_events
from luna_core.run.runlock import RunLock
from luna_core.train.checkpoint import load_checkpoint
from luna_tui.cli import main as cli_main
from tests.test_queue import entries, reference_and_runner, tiny_options
from tests.trainhelpers import STARTED, hold_run_lock, run_dirs

PY = [sys.executable, "-m", "luna_tui"]


def wait_until(predicate, what, proc=None, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the runner ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_started_and_finished(run_dir):
    """The kinds run_started / run_finished in the order the event file has them."""
    return [e.kind for e in read_events(os.path.join(run_dir, "events.jsonl"))
            if isinstance(e, ev.RunStarted | ev.RunFinished)]


# ----------------------------------------------------------------- a killed runner

def test_a_runner_killed_with_sigkill_leaves_no_run_training_twice(tiny_data, tmp_path):
    _argv, reference, runner = reference_and_runner(tiny_data, tmp_path)
    runs = tmp_path / "runs"
    wait_until(lambda: entries(runs)[0].get("run_dir"), "the run folder", runner)
    run_dir = entries(runs)[0]["run_dir"]
    # hold the run at a batch boundary of epoch 1: paused, so the kill lands mid-run
    assert cli_main(["ctl", run_dir, "pause", "--runs-dir", str(runs)]) == 0
    wait_until(lambda: any(isinstance(e, ev.StatusChanged) and e.state == ev.PAUSED
                           for e in read_events(os.path.join(run_dir, "events.jsonl"))),
               "the pause", runner)
    child = entries(runs)[0]["pid"]
    runner.kill()                                    # SIGKILL to the runner alone
    runner.wait(timeout=30)
    # the child learns of its runner's death and stops with a checkpoint (exit 143)
    wait_until(lambda: run_started_and_finished(run_dir)[-1:] == ["run_finished"],
               "the orphan's stop")
    finished = [e for e in read_events(os.path.join(run_dir, "events.jsonl"))
                if isinstance(e, ev.RunFinished)]
    assert finished[-1].state == ev.STOPPED and finished[-1].exit_code == 143
    wait_until(lambda: not qu.pid_alive(child, None, None), "the orphan's exit")

    again = subprocess.run([*PY, "queue", "run", "--runs-dir", str(runs)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    (entry,) = entries(runs)
    assert entry["state"] == "done" and entry["attempts"] == 2
    assert run_dirs(runs) == [run_dir]              # resumed in its folder
    # one process at a time: each run_started is followed by its run_finished
    assert run_started_and_finished(run_dir) == ["run_started", "run_finished"] * 2
    mine = load_checkpoint(os.path.join(run_dir, "checkpoints", "e002-end.pt"))["model"]
    theirs = load_checkpoint(os.path.join(reference, "checkpoints", "e002-end.pt"))["model"]
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def _queue_with(runs, **entry):
    runs.mkdir(parents=True, exist_ok=True)
    q = qu.Queue()
    e = q.add(["--epochs", "1"], now=1.0)
    for k, v in entry.items():
        setattr(e, k, v)
    qu.save(str(runs), q)


class FakeLaunch:
    """A launcher that records its calls and 'runs' nothing (exit 0)."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, run_id, run_dir, started):
        self.calls.append((argv, run_id))
        return qu.RunResult(0, None, "")


def _run_in_thread(runs, launch, said):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "failures", qu.run_queue(str(runs), launch, say=said.append, poll=0.05)))
    thread.start()
    return thread, result


def test_a_restarted_runner_waits_while_the_entrys_run_folder_is_held(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "luna" / "2026-12-07_06.00.00-x"
    run_dir.mkdir(parents=True)
    _queue_with(runs, state=qu.RUNNING, run_dir=str(run_dir), attempts=1, started=1.0)
    holder = hold_run_lock(run_dir)
    launch, said = FakeLaunch(), []
    thread, result = _run_in_thread(runs, launch, said)
    wait_until(lambda: any("waiting for its run" in s for s in said), "the wait")
    assert f"pid {holder.pid}" in next(s for s in said if "waiting" in s)
    assert launch.calls == [] and thread.is_alive()     # nothing started beside it
    holder.kill()
    holder.wait(timeout=30)
    thread.join(timeout=60)
    assert not thread.is_alive() and result["failures"] == 0
    # no checkpoint in its folder: started again from scratch, once the holder was gone
    assert [argv for argv, _id in launch.calls] == [["--epochs", "1"]]


def test_an_entry_interrupted_before_its_first_checkpoint_waits_for_its_process(tmp_path):
    """No run folder yet: the entry's pid (and its start time) tells that it still lives."""
    import psutil

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                               start_new_session=True)
    STARTED.append(sleeper)
    runs = tmp_path / "runs"
    _queue_with(runs, state=qu.RUNNING, attempts=1, started=time.time(), pid=sleeper.pid,
                pid_created=psutil.Process(sleeper.pid).create_time())
    launch, said = FakeLaunch(), []
    thread, _result = _run_in_thread(runs, launch, said)
    wait_until(lambda: any(f"its process (pid {sleeper.pid})" in s for s in said), "the wait")
    assert launch.calls == []
    sleeper.kill()
    sleeper.wait(timeout=30)
    thread.join(timeout=60)
    assert len(launch.calls) == 1
    # a pid reused by a newer process is not the entry's (another start time)
    _queue_with(runs, state=qu.RUNNING, attempts=1, started=time.time(), pid=os.getpid(),
                pid_created=psutil.Process(os.getpid()).create_time() - 100)
    assert qu.previous_process(str(runs), qu.load(str(runs)).entries[0]) is None


def test_a_stopped_entry_whose_run_had_finished_is_done_not_run_again(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "luna" / "2026-12-07_06.00.00-x"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "e001-end.pt").write_bytes(b"")
    events = [ev.RunStarted(run_dir=str(run_dir), options={}, epochs=1, start_epoch=1,
                            trn_samples=1, val_samples=1, trn_pos=0, val_pos=0, device="cpu",
                            pid=999_999, run_id="q1a1-x"),
              ev.RunFinished(state=ev.FINISHED, exit_code=0)]
    (run_dir / "events.jsonl").write_text(
        "".join(json.dumps(ev.event_to_dict(e)) + "\n" for e in events))
    _queue_with(runs, state=qu.STOPPED, attempts=1, run_id="q1a1-x", started=1.0)
    launch, said = FakeLaunch(), []
    assert qu.run_queue(str(runs), launch, say=said.append) == 0
    assert launch.calls == []
    (entry,) = entries(runs)
    assert entry["state"] == "done" and entry["run_dir"] == str(run_dir)


def test_the_run_folder_is_found_by_run_id_not_by_pid(tmp_path):
    runs = tmp_path / "runs"
    for name, run_id in (("2026-01-01_00.00.00-old", "someone-else"),
                         ("2026-12-07_06.00.00-new", "q1a1-mine")):
        run_dir = runs / "luna" / name
        run_dir.mkdir(parents=True)
        started = ev.RunStarted(run_dir=str(run_dir), options={}, epochs=1, start_epoch=1,
                                trn_samples=1, val_samples=1, trn_pos=0, val_pos=0,
                                device="cpu", pid=4242, run_id=run_id)   # one pid, twice
        (run_dir / "events.jsonl").write_text(json.dumps(ev.event_to_dict(started)) + "\n")
    assert qu.find_run_dir(str(runs), "q1a1-mine").endswith("-new")
    assert qu.find_run_dir(str(runs), "q1a1-other") is None
    assert qu.find_run_dir(str(runs), "") is None


@pytest.mark.parametrize("code, state", [(143, "stopped"), (130, "stopped"),
                                         (-15, "stopped"), (0, "done"), (1, "failed")])
def test_a_child_ended_by_a_signal_is_stopped_and_halts_the_queue(tmp_path, code, state):
    runs = tmp_path / "runs"
    runs.mkdir()
    q = qu.Queue()
    q.add(["--epochs", "1", "first"])
    q.add(["--epochs", "1", "second"])
    qu.save(str(runs), q)
    calls = []

    def launch(argv, run_id, run_dir, started):
        calls.append(argv)
        return qu.RunResult(code if len(calls) == 1 else 0, None, "")

    qu.run_queue(str(runs), launch, say=lambda _line: None)
    first, second = entries(runs)
    assert first["state"] == state
    if state == "stopped":
        assert "resumes it" in first["reason"]
        assert second["state"] == "queued" and len(calls) == 1      # the queue halted
        assert json.loads((runs / "queue.json").read_text())["halt"] is True
    else:
        assert second["state"] == "done"


# ----------------------------------------------------------------- queue stop

def test_queue_stop_reaches_a_child_that_is_starting_up(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    argv = tiny_options(tiny_data, "--epochs", "100000")
    assert cli_main(["queue", "add", "--runs-dir", str(runs), *argv]) == 0
    runner = subprocess.Popen([*PY, "queue", "run", "--runs-dir", str(runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    STARTED.append(runner)
    wait_until(lambda: entries(runs)[0].get("pid"), "the child's start", runner)
    stop = subprocess.run([*PY, "queue", "stop", "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0 and "queue halted" in stop.stdout, stop.stdout + stop.stderr
    out, _ = runner.communicate(timeout=300)
    assert runner.returncode == 0, out
    (entry,) = entries(runs)
    assert entry["state"] == "stopped", out
    assert entry["exit_code"] in (143, -15)
    # it never went on to train its epochs
    for run_dir in run_dirs(runs):
        names = os.listdir(os.path.join(run_dir, "checkpoints"))
        assert not any(n.startswith("e002") for n in names)


def test_queue_stop_with_no_runner_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--epochs", "1"]) == 0
    before = (runs / "queue.json").read_bytes()
    assert cli_main(["queue", "stop", "--runs-dir", str(runs)]) == 0
    assert (runs / "queue.json").read_bytes() == before


# ----------------------------------------------------------------- --help acts on nothing

VERBS = [["add", "--epochs", "3"], ["ls"], ["rm", "1"], ["move", "1", "down"], ["run"],
         ["stop"], ["add"], ["rm"], ["move"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_every_verb_against_a_live_queue_changes_nothing(tmp_path, capsys, verb,
                                                                 flag):
    runs = tmp_path / "runs"
    for name in ("one", "two"):
        assert cli_main(["queue", "add", "--runs-dir", str(runs), "--epochs", "1", name]) == 0
    capsys.readouterr()

    def state():
        return {n: (runs / n).read_bytes() for n in sorted(os.listdir(runs))
                if (runs / n).is_file()}

    with qu.runner_lock(str(runs)):              # a runner at work
        before = state()
        code = cli_main(["queue", *verb, flag, "--runs-dir", str(runs)])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert state() == before
    assert f"luna-tui queue {verb[0]}" in out.out and "usage" in out.out.lower()
    assert "queued #" not in out.out and "removed" not in out.out and "halted" not in out.out


def test_subcommand_help_never_acts(tmp_path):
    """`luna-tui X --help` for every sub-command: help text, exit 0, nothing written."""
    from luna_tui.cli import SUBCOMMANDS

    for name in SUBCOMMANDS:
        result = subprocess.run([*PY, name, "--help"], capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
        assert result.returncode == 0, (name, result.stderr)
        assert "usage" in result.stdout.lower(), name
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- the queue's file

@pytest.mark.parametrize("content", [
    "[]", "{}", '{"entries": {}}', '{"format": "1", "entries": []}',
    '{"entries": [1]}', '{"entries": [{"id": "1", "argv": []}]}',
    '{"entries": [{"id": 1, "argv": "--lr 1"}]}', '{"entries": [{"id": 1, "argv": [1]}]}',
    '{"entries": [{"id": 1, "argv": [], "state": "zombie"}]}',
    '{"entries": [{"id": 1, "argv": []}, {"id": 1, "argv": []}]}',
    '{"entries": [{"argv": []}]}', '{"entries": [], "next_id": "x"}', "[[[[[[",
])
def test_a_queue_file_of_the_wrong_shape_is_one_line_for_every_verb(tmp_path, capsys,
                                                                      content):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "queue.json").write_text(content)
    for verb in (["ls"], ["add", "--epochs", "1"], ["rm", "1"], ["move", "1", "up"], ["run"]):
        assert cli_main(["queue", *verb, "--runs-dir", str(runs)]) == 2, verb
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(runs / "queue.json") in err, (verb, err)
    assert (runs / "queue.json").read_text() == content


def test_the_runs_dir_a_file_is_one_line_for_every_verb(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    for verb in (["ls"], ["add", "--epochs", "1"], ["rm", "1"], ["run"]):
        code = cli_main(["queue", *verb, "--runs-dir", str(runs)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(runs) in err, (verb, err)


def test_remove_refuses_an_entry_that_has_started_since_it_was_shown(tmp_path):
    runs = tmp_path / "runs"
    _queue_with(runs)
    shown = qu.load(str(runs))                         # a screen's copy: queued
    with qu.editing(str(runs)) as q:                   # the runner starts it meanwhile
        q.entries[0].state = qu.RUNNING
    assert shown.entries[0].state == qu.QUEUED
    with pytest.raises(LunaInputError, match="is running"):
        qu.remove(str(runs), shown.entries[0].id)
    assert entries(runs)[0]["state"] == "running"


# ----------------------------------------------------------------- queue add checks

@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--examples", "-1"], "--examples"), (["--keep-examples", "0"], "--keep-examples"),
    (["--lr", "-5"], "--lr"), (["--lr", "nan"], "--lr"), (["--momentum", "2"], "--momentum"),
    (["--resume=somewhere"], "--resume"), (["--resu", "somewhere"], "--resume"),
    (["--notify-timeout", "nan"], "--notify-timeout"),
    (["--sweep", "--lr", ",,,"], "no values"), (["../escape"], "comment"),
    (["--tb-prefix", "../../x"], "--tb-prefix"),
])
def test_queue_add_refuses_what_the_run_would_refuse(tmp_path, capsys, argv, message):
    runs = tmp_path / "runs"
    try:
        code = cli_main(["queue", "add", "--runs-dir", str(runs), *argv])
    except SystemExit as exc:                     # argparse's own exit
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (runs / "queue.json").exists()


def test_a_preset_keeps_the_users_own_value(tmp_path):
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--preset", "ch12",
                     "--balanced", "3"]) == 0
    for e in entries(runs):
        assert e["argv"].count("--balanced") == 1, e["argv"]
        k = e["argv"].index("--balanced")
        assert e["argv"][k + 1] == "3", e["argv"]     # not the preset's bare --balanced


def test_a_lock_on_a_run_folder_is_one_owner(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = RunLock.acquire(str(run_dir))
    with pytest.raises(LunaInputError, match=f"pid {os.getpid()}"):
        RunLock.acquire(str(run_dir))
    lock.release()
    RunLock.acquire(str(run_dir)).release()


def test_a_runner_told_to_stop_while_it_waits_stops_and_leaves_the_entry(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "luna" / "2026-12-07_06.00.00-x"
    run_dir.mkdir(parents=True)
    _queue_with(runs, state=qu.RUNNING, run_dir=str(run_dir), attempts=1, started=1.0)
    hold_run_lock(run_dir)
    launch, said, stop = FakeLaunch(), [], threading.Event()
    thread = threading.Thread(target=lambda: qu.run_queue(
        str(runs), launch, say=said.append, poll=0.05, should_stop=stop.is_set))
    thread.start()
    wait_until(lambda: any("waiting for its run" in s for s in said), "the wait")
    stop.set()                                       # SIGTERM to the runner, say
    thread.join(timeout=60)
    assert not thread.is_alive() and launch.calls == []
    (entry,) = entries(runs)
    assert entry["state"] == "running" and entry["attempts"] == 1     # left as it was
    assert json.loads((runs / "queue.json").read_text())["halt"] is True
