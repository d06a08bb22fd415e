"""Cost before commitment (issue 31, item 2): `queue add` and `check` say what each run
will take from the data set's size and this machine's measured speed, warn above a
threshold, and the ch. 12 preset scales its balanced epoch to the data set.

Controlled inputs: a candidate list of a known size, a past run's event file with known
samples and seconds; nothing is trained."""

from __future__ import annotations

import json
import os

from luna_core.run import events as ev
from luna_core.run.cost import count_rows, run_speed, scaled_epoch_samples
from luna_core.run.runs import this_host
from luna_tui.cli import main as cli_main
from tests.test_queue import entries


def data_set(path, rows: int) -> str:
    """A LUNA16 folder's two CSVs with ``rows`` candidates (no CT: nothing here reads one)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "annotations.csv"), "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with open(os.path.join(path, "candidates.csv"), "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,class\n")
        for k in range(rows):
            f.write(f"1.2.3.{k % 7},{k},0,0,{int(k % 50 == 0)}\n")
    return str(path)


def past_run(runs, batch_size: int = 32, device: str = "cpu", task: str | None = None) -> str:
    """A run on this host: 3,200 training samples in 100 s, 1,000 validation ones in 5 s."""
    run_dir = os.path.join(runs, "luna", f"2026-12-07_10.00.00-before-{task}")
    os.makedirs(run_dir)
    options = {"batch_size": batch_size, **({"task": task} if task else {})}
    events = [
        ev.RunStarted(run_dir=run_dir, options=options, epochs=1,
                      start_epoch=1, trn_samples=3200, val_samples=1000, trn_pos=10,
                      val_pos=3, device=device, pid=1, host=this_host(), t=1.0),
        ev.PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=2.0),
        ev.BatchDone(phase="trn", epoch=1, batch_ndx=99, batch_count=100, samples=32,
                     total_samples=3200, loss=0.5, data_s=0.1, compute_s=0.9,
                     active_s=100.0, t=102.0),
        ev.PhaseStarted(phase="val", epoch=1, batch_count=32, sample_count=1000, t=103.0),
        ev.BatchDone(phase="val", epoch=1, batch_ndx=31, batch_count=32, samples=8,
                     total_samples=3200, loss=0.5, data_s=0.01, compute_s=0.1,
                     active_s=5.0, t=108.0),
        ev.RunFinished(state=ev.FINISHED, exit_code=0, last_checkpoint=None, t=109.0),
    ]
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        for e in events:
            f.write(json.dumps(ev.event_to_dict(e)) + "\n")
    return run_dir


def test_count_rows_and_the_speed_of_a_past_run(tmp_path):
    data = data_set(tmp_path / "data", 1000)
    assert count_rows(os.path.join(data, "candidates.csv")) == 1000
    assert count_rows(str(tmp_path / "nothing.csv")) == 0
    run_dir = past_run(str(tmp_path / "runs"))
    from luna_core.run.eventfile import read_events, run_event_file

    assert run_speed(read_events(run_event_file(run_dir))) == (32.0, 200.0)
    assert scaled_epoch_samples(9_000) == 9_000
    assert scaled_epoch_samples(500_000) == 200_000       # real-sized: the book's
    assert scaled_epoch_samples(0) is None


def test_queue_add_says_each_runs_cost_from_the_measured_speed(tmp_path, capsys):
    data = data_set(tmp_path / "data", 1000)
    runs = str(tmp_path / "runs")
    run_dir = past_run(runs)
    assert cli_main(["queue", "add", "--runs-dir", runs, "--data-dir", data, "--device", "cpu",
                     "--epochs", "3", "x"]) == 0
    out = capsys.readouterr().out
    # 900 training and 100 validation candidates (val_stride 10), 3 epochs at 32 / 200 per s
    assert (f"  about 1m 26s: 3 epoch(s) of 900 training + 100 validation samples at 32 / "
            f"200 samples/s (measured by {run_dir})") in out
    assert cli_main(["queue", "add", "--runs-dir", runs, "--data-dir", data, "--device", "cpu",
                     "--batch-size", "16", "x"]) == 0
    assert "(guessed for a CPU: no run of batch 16 here yet)" in capsys.readouterr().out


def test_the_ch12_preset_scales_its_epoch_to_the_data_and_the_total_is_said(tmp_path, capsys):
    data = data_set(tmp_path / "data", 1000)
    runs = str(tmp_path / "runs")
    assert cli_main(["queue", "add", "--runs-dir", runs, "--preset", "ch12", "--data-dir", data,
                     "--device", "cpu"]) == 0
    argvs = {e["argv"][0]: e["argv"] for e in entries(tmp_path / "runs")}
    assert "--epoch-samples=900" not in argvs["plain"]
    assert all("--epoch-samples=900" in a for name, a in argvs.items() if name != "plain")
    out, err = capsys.readouterr()
    assert out.count("  about ") == 8 and "in all about " in out
    assert "warning" not in err
    # the user's own epoch size stays; a long queue is warned about (and still queued)
    assert cli_main(["queue", "add", "--runs-dir", runs, "--preset", "ch12", "--data-dir", data,
                     "--device", "cpu", "--epoch-samples", "100000", "--epochs", "20"]) == 0
    added = entries(tmp_path / "runs")[8:]
    assert all("--epoch-samples=900" not in e["argv"] for e in added)
    err = capsys.readouterr().err
    assert "warning: these 8 run(s) take about " in err and "(more than 12 h)" in err


def test_check_says_what_an_epoch_costs(tmp_path, capsys):
    from luna_core.data.preflight import Report, _check_cost

    data = data_set(tmp_path / "data", 1000)
    runs = str(tmp_path / "runs")
    past_run(runs)
    report = Report()
    _check_cost(report, os.path.join(data, "candidates.csv"), 10, runs, 32, device="cpu")
    assert report.lines[0].startswith("cost      an epoch about 29s: 1 epoch(s) of 900 "
                                      "training + 100 validation samples at 32 / 200")
    assert report.lines[1] == ("          with --balanced (the book's 200,000 samples an "
                               "epoch): about 1h 44m")


def test_a_seg_runs_cost_counts_its_validations_slices_and_its_own_speed(tmp_path, capsys):
    """--task seg: 300,000 samples an epoch by default, validation every 5th epoch and the
    last, its slices from the validation nodules; the speed of a seg run, not a classifier's."""
    data = data_set(tmp_path / "data", 1000)
    with open(os.path.join(data, "annotations.csv"), "a") as f:
        for k in range(40):                                 # 40 nodules: 4 validate
            f.write(f"1.2.3.{k % 7},{k},0,0,6.0\n")
    runs = str(tmp_path / "runs")
    past_run(runs, batch_size=16)                          # a classifier's: not its speed
    argv = ["queue", "add", "--runs-dir", runs, "--data-dir", data, "--device", "cpu",
            "--task", "seg", "--epochs", "6"]
    assert cli_main([*argv, "x"]) == 0
    out = capsys.readouterr().out
    assert ("6 epoch(s) of 300,000 training + 2 validation(s) of 16 samples at 150 / 60 "
            "samples/s (guessed for a CPU: no --task seg run of batch 16 here yet)") in out
    seg_dir = past_run(runs, batch_size=16, task="seg")
    assert cli_main([*argv, "--epoch-samples", "3200", "--val-every", "1", "y"]) == 0
    # 6 x 3,200 at 32/s + 6 x 16 at 200/s = 600.5 s
    assert (f"about 10m 00s: 6 epoch(s) of 3,200 training + 16 validation samples at 32 / 200 "
            f"samples/s (measured by {seg_dir})") in capsys.readouterr().out
