"""Headless runs as subprocesses: SIGTERM / SIGINT / SIGHUP checkpoint and exit 143 / 130 / 129
(sent to the whole process group, so DataLoader workers get them too); SIGUSR1 checkpoints and
goes on; a second SIGINT exits at once even when the batch under way never ends.

Machine-independent by construction: exit codes, checkpoints and events, waited on in the
event file; no value SGD reaches."""

from __future__ import annotations

import glob
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from luna_core.run.control_socket import ControlClient
from luna_core.train.checkpoint import load_checkpoint
from tests.trainhelpers import (
    read_run_events,
    run_dirs,
    start_headless,
    states,
    trn_batches,
    wait_for_events,
)

FAST = ("--max-batches", "2", "--batch-size", "4")


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """The process's output up to the first line holding ``needle`` (the timeout only guards
    against a hang)."""
    seen = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not selector.select(timeout=1.0):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return "".join(seen)
    raise AssertionError(f"{needle!r} not in the output:\n{''.join(seen)[-3000:]}")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                            (signal.SIGHUP, 129)])
def test_stop_signal_checkpoints_at_the_paused_position_and_exits(train_argv, tmp_path,
                                                                  signum, status):
    proc = start_headless(train_argv, tmp_path)
    records = wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 2, proc)
    # paused first, so the position where it must stop is known
    assert ControlClient(records[0]["control_socket"]).pause()["ok"]
    records = wait_for_events(tmp_path, lambda r: states(r)[-1:] == ["paused"], proc)
    last = trn_batches(records)[-1]
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == status, out
    name = signal.Signals(signum).name
    assert f"{name}: stopping at the next batch boundary with a checkpoint" in out
    records = read_run_events(tmp_path)
    finished = records[-1]
    assert finished["kind"] == "run_finished" and finished["state"] == "stopped"
    assert trn_batches(records)[-1] == last                   # no batch after the pause
    checkpoint = [r for r in records if r["kind"] == "checkpoint"][-1]
    assert checkpoint["reason"] == "stop"
    assert (checkpoint["epoch"], checkpoint["batch_ndx"]) == (last["epoch"],
                                                              last["batch_ndx"] + 1)
    state = load_checkpoint(checkpoint["path"])
    assert state["total_samples"] == checkpoint["total_samples"] == last["total_samples"]
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
    proc.communicate(timeout=60)
    assert proc.returncode == 143


# A headless run whose training batch 2 of epoch 2 never ends (a hung read, say): a first
# SIGINT cannot stop it at a batch boundary, so only the second one can end it.
STUCK_RUN = textwrap.dedent("""
    import sys, time
    from luna_core.training import LunaTrainingApp
    from luna_tui.cli import main

    compute = LunaTrainingApp.compute_batch_loss

    def stuck(self, batch_ndx, batch_tup, metrics_g):
        if self.model.training and self.epoch == 2 and batch_ndx == 1:
            print("stuck in a batch", flush=True)
            while True:
                time.sleep(3600)
        return compute(self, batch_ndx, batch_tup, metrics_g)

    LunaTrainingApp.compute_batch_loss = stuck
    sys.exit(main(["--headless", *sys.argv[1:]]))
""")


def test_second_sigint_exits_at_once_and_keeps_the_last_checkpoint(train_argv, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", STUCK_RUN, *train_argv("--epochs", "3",
                                                                          *FAST)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        read_until(proc, "stuck in a batch")
        os.killpg(proc.pid, signal.SIGINT)
        # the first is taken (and said) before the second is sent: two signals sent at once
        # can arrive as one
        read_until(proc, "SIGINT: stopping at the next batch boundary")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130
    assert "second interrupt: exiting now" in out
    records = read_run_events(tmp_path)
    assert not any(r["kind"] == "run_finished" for r in records)   # it did not wait for that
    (run_dir,) = run_dirs(tmp_path / "runs")
    saved = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*.pt")))
    assert [os.path.basename(p) for p in saved] == ["best.pt", "e001-end.pt"]
    for path in saved:                                 # intact: loadable, epoch 1 complete
        state = load_checkpoint(path)
        assert (state["epoch"], state["epoch_done"], state["total_samples"]) == (1, True, 8)
