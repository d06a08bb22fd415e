"""Headless runs as subprocesses: SIGTERM / SIGINT checkpoint and exit 143 / 130 (sent to the
whole process group, so DataLoader workers get them too); SIGUSR1 checkpoints and goes on."""

from __future__ import annotations

import glob
import os
import signal
import time

import pytest

from luna_core.checkpoint import load_checkpoint
from tests.trainhelpers import read_run_events, start_headless, trn_batches, wait_for_events


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                            (signal.SIGHUP, 129)])
def test_stop_signal_checkpoints_and_exits(train_argv, tmp_path, signum, status):
    proc = start_headless(train_argv, tmp_path)
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 2, proc)
    sent = time.monotonic()
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 15
    assert proc.returncode == status, out
    records = read_run_events(tmp_path)
    finished = records[-1]
    assert finished["kind"] == "run_finished" and finished["state"] == "stopped"
    checkpoint = [r for r in records if r["kind"] == "checkpoint"][-1]
    assert checkpoint["reason"] == "stop"
    state = load_checkpoint(checkpoint["path"])
    assert state["total_samples"] == checkpoint["total_samples"] > 0
    assert "Traceback" not in out


def test_sigusr1_checkpoints_and_training_goes_on(train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path)
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, proc)
    os.killpg(proc.pid, signal.SIGUSR1)
    records = wait_for_events(tmp_path, lambda r: any(x["kind"] == "checkpoint" for x in r), proc)
    checkpoint = next(x for x in records if x["kind"] == "checkpoint")
    assert checkpoint["reason"] == "request"
    assert load_checkpoint(checkpoint["path"])["total_samples"] == checkpoint["total_samples"]
    done = len(trn_batches(records))
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= done + 2, proc)  # it went on
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


def test_second_sigint_exits_at_once_and_keeps_the_last_checkpoint(train_argv, tmp_path):
    proc = start_headless(train_argv, tmp_path)
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, proc)
    os.killpg(proc.pid, signal.SIGUSR1)
    records = wait_for_events(tmp_path, lambda r: any(x["kind"] == "checkpoint" for x in r), proc)
    first = next(x for x in records if x["kind"] == "checkpoint")["path"]
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert load_checkpoint(first)["format_version"] == 1
    for path in glob.glob(os.path.join(os.path.dirname(first), "*.pt")):
        load_checkpoint(path)
