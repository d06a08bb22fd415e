"""`luna-tui ctl` against a real headless run: each command and what the run acknowledged,
a refused command, and a finished run.

Machine-independent by construction: acknowledgements and files only, waited on in the event
file."""

from __future__ import annotations

import os
import socket

from luna_core.train.checkpoint import load_checkpoint
from luna_tui.cli import main as cli_main
from tests.trainhelpers import read_run_events, start_headless, wait_for_events


def _ctl(capsys, run_dir, *words) -> tuple[int, str, str]:
    code = cli_main(["ctl", run_dir, *words, "--wait", "60"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _training(train_argv, tmp_path):
    """A headless run on the tiny set once it has done a batch: (its process, its folder,
    its events so far)."""
    proc = start_headless(train_argv, tmp_path)
    records = wait_for_events(tmp_path, lambda r: any(
        x["kind"] == "batch_done" for x in r), proc)
    return proc, records[0]["run_dir"], records


def test_ctl_pauses_checkpoints_resumes_refuses_and_stops_a_real_run(train_argv, tmp_path,
                                                                    capsys):
    proc, run_dir, _ = _training(train_argv, tmp_path)

    code, out, _ = _ctl(capsys, run_dir, "pause")
    assert code == 0 and out.startswith("paused after E"), out
    # batches counted as the cockpit counts them: after the 10th of 43 is "batch 10/43"
    records = read_run_events(tmp_path)
    paused_at = max(i for i, r in enumerate(records)
                    if r["kind"] == "status" and r["state"] == "paused")
    last = [r for r in records[:paused_at] if r["kind"] == "batch_done"][-1]
    assert out.strip() == (f"paused after E{last['epoch']} {last['phase']} batch "
                           f"{last['batch_ndx'] + 1}/{last['batch_count']}")
    code, out, _ = _ctl(capsys, run_dir, "pause")
    assert code == 0 and out.startswith("already paused")

    code, out, _ = _ctl(capsys, run_dir, "checkpoint")
    assert code == 0 and out.startswith("checkpoint saved at E")
    path = out.strip().rsplit(": ", 1)[1]
    assert os.path.isfile(path) and load_checkpoint(path)["total_samples"] > 0

    code, out, err = _ctl(capsys, run_dir, "frobnicate")
    assert code == 2 and out == ""
    assert err == ("luna-tui ctl: unknown command 'frobnicate': use one of pause, resume, "
                   "checkpoint, stop, stop-after-epoch or set lr=X momentum=Y\n")

    code, out, _ = _ctl(capsys, run_dir, "resume")
    assert code == 0 and out.startswith("resumed")
    code, out, _ = _ctl(capsys, run_dir, "resume")
    assert code == 0 and "nothing to resume" in out

    code, out, _ = _ctl(capsys, run_dir, "stop")
    assert code == 0 and out.startswith("stopped (stopped, exit status 0); last checkpoint ")
    assert proc.wait(timeout=60) == 0
    kinds = [r["kind"] for r in read_run_events(tmp_path)]
    assert kinds[-1] == "run_finished"

    code, out, err = _ctl(capsys, run_dir, "pause")
    assert code == 2 and "not running (stopped)" in err and err.count("\n") == 1


def test_ctl_stop_after_epoch_ends_a_real_run_at_the_end_of_its_epoch(train_argv, tmp_path,
                                                                      capsys):
    proc, run_dir, _ = _training(train_argv, tmp_path)

    code, out, _ = _ctl(capsys, run_dir, "stop-after-epoch")
    assert code == 0 and out.startswith("stops at the end of E"), out
    epoch = int(out.split("E", 1)[1].split(",", 1)[0])
    assert "once it is validated and checkpointed (asked after E" in out
    assert proc.wait(timeout=60) == 0
    records = read_run_events(tmp_path)
    assert max(r["epoch"] for r in records if r["kind"] == "epoch_metrics") == epoch
    assert [r["reason"] for r in records if r["kind"] == "checkpoint"][-1] == "epoch"
    assert records[-1]["kind"] == "run_finished" and records[-1]["state"] == "stopped"


def test_ctl_latest_with_no_runs_is_one_line_and_exit_2(tmp_path, capsys):
    code = cli_main(["ctl", "latest", "pause", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no runs here" in err


def test_ctl_is_answered_with_100_idle_clients_connected(train_argv, tmp_path, capsys):
    """Leaked connections (a script, a crashed cockpit) fill the run's control socket: the
    connection idle the longest makes room, so `ctl pause` still gets through."""
    proc, run_dir, records = _training(train_argv, tmp_path)
    started = next(r for r in records if r["kind"] == "run_started")
    idle = []
    try:
        for _ in range(100):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(started["control_socket"])   # blocking: waits while the backlog is full
            sock.settimeout(60)
            idle.append(sock)
        code, out, err = _ctl(capsys, run_dir, "pause")
        assert code == 0 and out.startswith("paused after E"), (out, err)
        # the 100 were made room for one after another: the oldest got one line, then EOF
        reader = idle[0].makefile("rb")
        assert b"closed: idle for" in reader.readline() and reader.readline() == b""
        reader.close()
    finally:
        for sock in idle:
            sock.close()
    code, out, _ = _ctl(capsys, run_dir, "stop")
    assert code == 0 and proc.wait(timeout=60) == 0
    assert "Traceback" not in proc.output()
