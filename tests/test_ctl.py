"""`luna-tui ctl` against a real headless run: each command and what the run acknowledged,
a refused command, and a finished run."""

from __future__ import annotations

import os

from luna_core.train.checkpoint import load_checkpoint
from luna_tui.cli import main as cli_main
from tests.trainhelpers import read_run_events, start_headless, wait_for_events


def _ctl(capsys, run_dir, *words) -> tuple[int, str, str]:
    code = cli_main(["ctl", run_dir, *words, "--wait", "60"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_ctl_pauses_checkpoints_resumes_refuses_and_stops_a_real_run(train_argv, tmp_path,
                                                                    capsys):
    proc = start_headless(train_argv, tmp_path)
    records = wait_for_events(tmp_path, lambda r: any(
        x["kind"] == "batch_done" for x in r), proc)
    run_dir = records[0]["run_dir"]

    code, out, _ = _ctl(capsys, run_dir, "pause")
    assert code == 0 and out.startswith("paused after E"), out
    code, out, _ = _ctl(capsys, run_dir, "pause")
    assert code == 0 and out.startswith("already paused")

    code, out, _ = _ctl(capsys, run_dir, "checkpoint")
    assert code == 0 and out.startswith("checkpoint saved at E")
    path = out.strip().rsplit(": ", 1)[1]
    assert os.path.isfile(path) and load_checkpoint(path)["total_samples"] > 0

    code, out, err = _ctl(capsys, run_dir, "frobnicate")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "refused 'frobnicate'" in err and run_dir in err

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


def test_ctl_latest_with_no_runs_is_one_line_and_exit_2(tmp_path, capsys):
    code = cli_main(["ctl", "latest", "pause", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no runs here" in err
