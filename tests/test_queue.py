"""The experiment queue: options checked when queued, grids and the ch. 12 preset, one runner
at a time, a failed entry does not stop the queue, and a runner killed with SIGKILL resumes
its run from the last checkpoint and ends with the weights of an uninterrupted run.

Machine-independent by construction: states, files and exit codes; the weights are compared
between two runs on this machine (the same computation in the same order)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from luna_core.run import queue as qu
from luna_core.train.checkpoint import load_checkpoint
from luna_tui.cli import main as cli_main
from tests.trainhelpers import STARTED, run_dirs, run_loop

PY = [sys.executable, "-m", "luna_tui"]


def tiny_options(tiny_data, *extra):
    return ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--num-workers", "0", "--batch-size", "8", "--device", "cpu", "--threads", "1",
            "--froc-bootstrap", "0", *extra]


def entries(runs):
    return json.loads((runs / "queue.json").read_text())["entries"]


def test_a_bad_option_is_refused_when_queued_and_nothing_is_added(tmp_path, capsys):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as info:
        cli_main(["queue", "add", "--runs-dir", str(runs), "--lr", "fast"])
    assert info.value.code == 2
    assert "--lr" in capsys.readouterr().err
    assert not (runs / "queue.json").exists()
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--resume", "x"]) == 2
    assert not (runs / "queue.json").exists()


def test_a_sweep_is_a_grid_and_the_preset_is_chapter_12(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--sweep", "--lr",
                     "0.001,0.0003", "--balanced", "1,2", "--epochs", "3"]) == 0
    argvs = [e["argv"] for e in entries(runs)]
    # each entry named by the values that vary (issue 31: all were named 'sw')
    assert argvs == [["lr0.001-balanced1", "--lr", "0.001", "--balanced", "1", "--epochs", "3"],
                     ["lr0.001-balanced2", "--lr", "0.001", "--balanced", "2", "--epochs", "3"],
                     ["lr0.0003-balanced1", "--lr", "0.0003", "--balanced", "1", "--epochs", "3"],
                     ["lr0.0003-balanced2", "--lr", "0.0003", "--balanced", "2", "--epochs", "3"]]
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--preset", "ch12",
                     "--epochs", "2"]) == 0
    added = entries(runs)[4:]
    assert [e["argv"][0] for e in added] == [name for name, _ in qu.PRESETS["ch12"]]
    assert added[3]["argv"] == ["balanced-offset", "--epochs", "2", "--balanced",
                                "--augment-offset"]
    assert cli_main(["queue", "move", "--runs-dir", str(runs), "2", "up"]) == 0
    assert [e["id"] for e in entries(runs)][:2] == [2, 1]
    assert cli_main(["queue", "rm", "--runs-dir", str(runs), "3"]) == 0
    assert 3 not in [e["id"] for e in entries(runs)]
    out = capsys.readouterr().out
    assert "queued #1: lr0.001-balanced1 --lr 0.001 --balanced 1 --epochs 3" in out


def test_sweep_and_preset_entries_keep_the_comment_and_add_what_varies(tmp_path):
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--sweep", "--balanced",
                     "sw", "--augment-offset=0.1,0.2", "--epochs", "1"]) == 0
    assert [e["argv"] for e in entries(runs)] == [
        ["sw-augment-offset0.1", "--balanced", "--augment-offset", "0.1", "--epochs", "1"],
        ["sw-augment-offset0.2", "--balanced", "--augment-offset", "0.2", "--epochs", "1"]]
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--preset", "ch12",
                     "--epochs", "1", "mine"]) == 0
    names = [e["argv"][0] for e in entries(runs)[2:]]
    assert names == [f"mine-{name}" for name, _ in qu.PRESETS["ch12"]]
    assert all(e["argv"].count("mine") == 0 for e in entries(runs)[2:])


def test_two_runners_at_once_are_refused_and_a_dead_ones_lock_is_not(tmp_path):
    runs = tmp_path / "runs"
    with qu.runner_lock(str(runs)):
        second = subprocess.run([*PY, "queue", "run", "--runs-dir", str(runs)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "another 'luna-tui queue run' is working" in second.stderr
        assert str(os.getpid()) in second.stderr
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from luna_core.run.queue import runner_lock\n"
        f"with runner_lock({str(runs)!r}):\n print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    STARTED.append(holder)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()                                       # SIGKILL: no clean-up at all
    holder.wait(timeout=30)
    after = subprocess.run([*PY, "queue", "run", "--runs-dir", str(runs)],
                           capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert "queue: 0 done, 0 failed, 0 waiting" in after.stdout


def test_a_failing_entry_is_marked_and_the_queue_goes_on(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    base = tiny_options(tiny_data, "--epochs", "1", "--max-batches", "1")
    missing = list(base)
    missing[missing.index("--data-dir") + 1] = str(tmp_path / "nowhere")
    for argv in (base + ["first"], missing + ["second"], base + ["third"]):
        assert cli_main(["queue", "add", "--runs-dir", str(runs), *argv]) == 0
    told = tmp_path / "told.txt"
    result = subprocess.run([*PY, "queue", "run", "--runs-dir", str(runs), "--notify-cmd",
                             f'echo "$LUNA_EVENT: $LUNA_MESSAGE" >> {told}'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr     # one failed
    states = [(e["state"], e["exit_code"]) for e in entries(runs)]
    assert states == [("done", 0), ("failed", 2), ("done", 0)]
    second = entries(runs)[1]
    assert "does not exist" in second["reason"] and "nowhere" in second["reason"]
    assert [os.path.basename(d).split("-")[-1] for d in run_dirs(runs)] == ["first", "third"]
    lines = told.read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["queue_entry_done", "queue_entry_failed",
                                                  "queue_entry_done", "queue_done"]
    assert "queue: 2 done, 1 failed, 0 waiting" in result.stdout
    # each attempt's console log named by when, which entry and which attempt
    logs = sorted(os.listdir(runs / "queue-logs"))
    assert [re.sub(r"^\d{4}-\d\d-\d\d_\d\d\.\d\d\.\d\d-(q\da\d)-[0-9a-f]{10}\.log$", r"\1", n)
            for n in logs] == ["q1a1", "q2a1", "q3a1"]


def _weights(run_dir):
    return load_checkpoint(os.path.join(run_dir, "checkpoints", "e002-end.pt"))["model"]


def reference_and_runner(tiny_data, tmp_path):
    """(argv, the folder of its uninterrupted run made in this process, a `queue run` of it
    in its own process group working on tmp_path/runs)."""
    argv = tiny_options(tiny_data, "--epochs", "2", "--max-batches", "3", "--seed", "5")
    reference = tmp_path / "reference"
    code, _rec, console = run_loop([*argv, "--runs-dir", str(reference)])
    assert code == 0, console
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), *argv]) == 0
    runner = subprocess.Popen([*PY, "queue", "run", "--runs-dir", str(runs)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    STARTED.append(runner)
    return argv, run_dirs(reference)[0], runner


def test_a_killed_runner_resumes_its_run_and_ends_with_the_uninterrupted_weights(
        tiny_data, tmp_path):
    _argv, reference, runner = reference_and_runner(tiny_data, tmp_path)
    runs = tmp_path / "runs"
    deadline = time.monotonic() + 300
    while True:                                   # until the run has its epoch-1 checkpoint
        dirs = run_dirs(runs)
        if dirs and os.path.exists(os.path.join(dirs[0], "checkpoints", "e001-end.pt")):
            break
        assert runner.poll() is None and time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.1)
    os.killpg(runner.pid, signal.SIGKILL)         # the runner and its run, mid-run
    runner.wait(timeout=30)
    (entry,) = entries(runs)
    assert entry["state"] == "running" and entry["run_dir"] == dirs[0]

    again = subprocess.run([*PY, "queue", "run", "--runs-dir", str(runs)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    (entry,) = entries(runs)
    assert entry["state"] == "done" and entry["attempts"] == 2
    assert run_dirs(runs) == dirs                 # resumed in its folder, not run twice
    assert "--resume" in again.stdout
    mine, theirs = _weights(dirs[0]), _weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_queue_ls_fits_80_columns_and_names_each_entry(tmp_path, capsys, monkeypatch):
    # issue 31, item 8: 'queue ls' wrapped at 80 columns (the options and folder on one line)
    import os as _os

    monkeypatch.setenv("COLUMNS", "80")
    runs = tmp_path / "runs"
    assert cli_main(["queue", "add", "--runs-dir", str(runs), "--preset", "ch12",
                     "--epochs", "10", "--data-dir", "/a/long/path/to/the/luna16/release/" * 2,
                     "--augment-noise", "25"]) == 0
    with qu.editing(str(runs)) as q:
        q.entries[0].state, q.entries[0].reason = "failed", "exit 1: " + "x" * 120
        q.entries[0].run_dir = _os.path.join(str(runs), "luna", "2026-12-07_04.19.49-" + "y" * 90)
    capsys.readouterr()
    assert cli_main(["queue", "ls", "--runs-dir", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80
    names = [ln.split()[4] for ln in lines if ln.startswith("#")]
    assert names == [name for name, _ in qu.PRESETS["ch12"]]
    assert any(ln.startswith("     (exit 1: xxx") and ln.endswith("…") for ln in lines)


def test_a_comment_is_told_from_option_values_also_after_abbreviated_options():
    from luna_core.train.options import split_comment

    # argparse takes a unique prefix of an option: '--tb luna2' is --tb-prefix luna2
    assert split_comment(["--tb", "luna2", "mine"]) == ("mine", ["--tb", "luna2"])
    assert split_comment(["--balanced", "2", "sw", "--lr=0.1"]) == ("sw", ["--balanced", "2",
                                                                          "--lr=0.1"])
    assert split_comment(["--balanced", "sw"]) == ("sw", ["--balanced"])
    assert split_comment(["--epochs", "3"]) == (None, ["--epochs", "3"])
