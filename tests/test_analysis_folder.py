"""An analysis folder is a run folder: `runs` lists it with its detection CPM, `runs OUT`
summarises it, attach shows its progress and its results (snapshots), and one analysis
writes a folder at a time. The analysis' numbers are set by the test (no models)."""

from __future__ import annotations

import json

import pytest
import torch

from luna_core.analysis import AnalysisRecord
from luna_core.errors import LunaInputError
from luna_tui.attach import build_attach_app
from luna_tui.cli import main as cli_main
from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen

UIDS = [f"1.2.826.0.1.3680043.8.498.{k}" for k in range(9)]
SUMMARY = {"series": 9, "detections": 1084,
           "detection": {"cpm": 0.612, "cpm_low": 0.55, "cpm_high": 0.67, "nodules": 14},
           "candidate_list": {"cpm": 0.701, "cpm_low": 0.62, "cpm_high": 0.78, "nodules": 14},
           "table": [[0, 1052, 24, 4], [1, 0, 7, 1], [0, 1, 1, 3]]}
OPTIONS = {"task": "analysis", "seg": "runs/luna/seg/checkpoints/best.pt",
           "cls": "runs/luna/cls/checkpoints/best.pt", "mal": None, "series": "val"}


def write_analysis(out, done: int = 9, finished: bool = True) -> AnalysisRecord:
    record = AnalysisRecord.open(str(out), OPTIONS, UIDS, torch.device("cpu"))
    speak = record.speaker(lambda line: None)
    for k in range(1, done + 1):
        record.series_done(k, 2.5, 0.25)
        speak(f"series {k}/9 {UIDS[k - 1]}: 120 candidates, 3 classified nodules in 2.5 s")
    if finished:
        record.finished(SUMMARY)
    return record


def frozen(out) -> None:
    """The event file as if recorded once: fixed times, pid and folder (snapshots)."""
    path = out / "events.jsonl"
    lines = []
    for i, line in enumerate(path.read_text().splitlines()):
        event = json.loads(line)
        event["t"] = 1_741_089_600.0 + 2.5 * i
        if event["kind"] == "run_started":
            event.update(pid=4242, run_dir="runs/analysis/val-1a2b3c4d", host="")
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    (out / "index.json").unlink()


def test_runs_lists_an_analysis_with_its_detection_cpm_and_summarises_it(tmp_path, capsys):
    write_analysis(tmp_path / "analysis" / "val-1a2b3c4d")
    assert cli_main(["runs", "--runs-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out.splitlines()
    head, row = listing[0], listing[1]
    assert "DETECTION CPM" in head and "BEST CPM" not in head
    assert row.split()[:3] == ["finished", "analysis", "1/1"]
    assert "0.612 [0.55–0.67]" in row
    assert cli_main(["runs", str(tmp_path / "analysis" / "val-1a2b3c4d")]) == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert "analysis finished after" in text and "9 of 9 series" in text
    assert ("detection CPM 0.612 [0.55–0.67], candidate-list CPM 0.701 [0.62–0.78], "
            "nodules found 85.7 %, FP per scan 3.11") in text


def test_one_analysis_writes_a_folder_at_a_time(tmp_path):
    first = write_analysis(tmp_path / "out", done=3, finished=False)
    with pytest.raises(LunaInputError, match="in use by"):
        AnalysisRecord.open(str(tmp_path / "out"), OPTIONS, UIDS, torch.device("cpu"))
    first.finished(SUMMARY)                      # released at its end
    second = AnalysisRecord.open(str(tmp_path / "out"), OPTIONS, UIDS, torch.device("cpu"))
    second.finished(SUMMARY)
    starts = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").open()
              if '"run_started"' in line]
    assert [s["resumed_from"] for s in starts] == [None, str(tmp_path / "out")]


async def test_attach_shows_a_running_analysis_series_by_series(tmp_path):
    out = tmp_path / "out"
    write_analysis(out, done=3, finished=False).failed(KeyboardInterrupt())
    app = build_attach_app(str(out), poll_interval=0.1, system_probe=lambda: FROZEN_READING,
                           clock=frozen_clock())
    async with app.run_test(size=(80, 24)) as pilot:
        await on_screen(pilot, app, "analysis · series 3/9",
                        "analysing: 3 of 9 series done")
        await pilot.press("5")
        text = await on_screen(pilot, app, "an analysis' scores are in the Detection pane (1)",
                               "STOPPED analysis · series 3/9 · view: diagnostics")
        assert "samples/s" not in text and "loss" not in text.splitlines()[0]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_attached_analysis_snapshot(snap_compare, tmp_path, size):
    out = tmp_path / "out"
    write_analysis(out)
    frozen(out)
    app = build_attach_app(str(out), poll_interval=0.1, system_probe=lambda: FROZEN_READING,
                           clock=frozen_clock())

    async def settled(pilot) -> None:
        await on_screen(pilot, app, "FINISHED", "analysis · series 9/9",
                        "detection CPM 0.612 [0.55–0.67]", "pred. malignant")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=settled)


async def test_a_killed_analysis_says_how_it_goes_on(tmp_path):
    """An analysis whose process died (no final event): not "nothing to resume from" (it has
    no checkpoints) but the command that goes on with the series it had not done."""
    import subprocess
    import sys

    out = tmp_path / "out"
    record = write_analysis(out, done=3, finished=False)
    record.lock.release()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()                                    # a pid no process has any more
    path = out / "events.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for event in lines:
        if event["kind"] == "run_started":
            event["pid"] = proc.pid
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    app = build_attach_app(str(out), poll_interval=0.1, system_probe=lambda: FROZEN_READING,
                           clock=frozen_clock())
    async with app.run_test(size=(120, 30)) as pilot:
        text = await on_screen(pilot, app, "ended unexpectedly",
                               "the same luna-tui analyze command with --out")
        assert "nothing to resume from" not in text
