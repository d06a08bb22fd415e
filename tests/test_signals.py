"""Headless runs as subprocesses: SIGTERM / SIGINT checkpoint and exit 143 / 130 (sent to the
whole process group, so DataLoader workers get them too); SIGUSR1 checkpoints and goes on."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from luna_core.checkpoint import load_checkpoint


def _start(train_argv, tmp_path, *extra):
    argv = train_argv("--epochs", "50", "--num-workers", "1", *extra)
    proc = subprocess.Popen([sys.executable, "-m", "luna_tui", "--headless", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    return proc


def _events(tmp_path):
    files = glob.glob(str(tmp_path / "runs" / "luna" / "*" / "events.jsonl"))
    if not files:
        return []
    records = []
    for line in open(files[0]).read().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return records


def _wait_for(tmp_path, predicate, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = _events(tmp_path)
        if predicate(records):
            return records
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the run")


def _batches(records):
    return [r for r in records if r["kind"] == "batch_done" and r["phase"] == "trn"]


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_checkpoints_and_exits(train_argv, tmp_path, signum, status):
    proc = _start(train_argv, tmp_path)
    _wait_for(tmp_path, lambda r: len(_batches(r)) >= 2, proc)
    sent = time.monotonic()
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 15
    assert proc.returncode == status, out
    records = _events(tmp_path)
    finished = records[-1]
    assert finished["kind"] == "run_finished" and finished["state"] == "stopped"
    checkpoint = [r for r in records if r["kind"] == "checkpoint"][-1]
    assert checkpoint["reason"] == "stop"
    state = load_checkpoint(checkpoint["path"])
    assert state["total_samples"] == checkpoint["total_samples"] > 0
    assert "Traceback" not in out


def test_sigusr1_checkpoints_and_training_goes_on(train_argv, tmp_path):
    proc = _start(train_argv, tmp_path)
    _wait_for(tmp_path, lambda r: len(_batches(r)) >= 1, proc)
    os.killpg(proc.pid, signal.SIGUSR1)
    records = _wait_for(tmp_path, lambda r: any(x["kind"] == "checkpoint" for x in r), proc)
    checkpoint = next(x for x in records if x["kind"] == "checkpoint")
    assert checkpoint["reason"] == "request"
    assert load_checkpoint(checkpoint["path"])["total_samples"] == checkpoint["total_samples"]
    done = len(_batches(records))
    _wait_for(tmp_path, lambda r: len(_batches(r)) >= done + 2, proc)  # it went on
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


def test_second_sigint_exits_at_once_and_keeps_the_last_checkpoint(train_argv, tmp_path):
    proc = _start(train_argv, tmp_path)
    _wait_for(tmp_path, lambda r: len(_batches(r)) >= 1, proc)
    os.killpg(proc.pid, signal.SIGUSR1)
    records = _wait_for(tmp_path, lambda r: any(x["kind"] == "checkpoint" for x in r), proc)
    first = next(x for x in records if x["kind"] == "checkpoint")["path"]
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert load_checkpoint(first)["format_version"] == 1
    for path in glob.glob(os.path.join(os.path.dirname(first), "*.pt")):
        load_checkpoint(path)
