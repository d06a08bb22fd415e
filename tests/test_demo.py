"""`luna-tui demo` (issue 30): the story queued once in its runs folder, worked through as
headless runs whose epoch lines it prints, and compared at the end; started again it goes
on (and queues nothing twice); --help does nothing. The story's own budget (about 10 minutes
on 2 cores) is measured in benchmarks/, not here: this runs it cut to 2 batches an epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from luna_core.run import demo as story


def _queue(runs_dir) -> list[dict]:
    with open(os.path.join(runs_dir, "queue.json"), encoding="utf-8") as f:
        return json.load(f)["entries"]


def test_help_acts_on_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "luna_tui", "demo", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage: luna-tui demo" in out.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_story_is_the_books(tiny_data):
    entries = story.demo_entries("D", "C")
    assert [e[0] for e in entries] == ["demo-plain", "demo-balanced",
                                       "demo-balanced-augmented"]
    assert "--balanced" not in entries[0] and "--balanced" in entries[1]
    assert "--augmented" in entries[2]
    for argv in entries:            # each a valid run of the options parser, same data
        assert argv[-4:] == ["--data-dir", "D", "--cache-dir", "C"]
        assert "--split" in argv and "series" in argv


@pytest.fixture
def short_story(monkeypatch):
    """The story cut to 2 batches of 4 an epoch, one epoch each, two runs."""
    monkeypatch.setattr(story, "DEMO_RUNS", story.DEMO_RUNS[:2])
    monkeypatch.setattr(story, "DEMO_OPTIONS", [
        *story.DEMO_OPTIONS, "--batch-size", "4", "--max-batches", "2", "--epochs", "1",
        "--froc-bootstrap", "10", "--examples", "0", "--threads", "1"])


def test_runs_the_story_then_compares_and_goes_on_when_started_again(
        tiny_data, tmp_path, short_story, capsys):
    from luna_tui.subcommands import demo_cmd

    runs = str(tmp_path / "runs")
    argv = ["--out", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", runs, "--headless"]
    assert demo_cmd.run(argv) == 0
    said = capsys.readouterr().out
    assert "written before" in said and "queued 2 runs" in said
    assert " E1 val " in said and " E1 trn " in said              # the runs' epoch lines
    entries = _queue(runs)
    assert [e["state"] for e in entries] == ["done", "done"]
    assert [e["argv"][0] for e in entries] == ["demo-plain", "demo-balanced"]
    assert "#1" in said and "#2" in said                      # compare's legend of both runs
    table, paired = said.rstrip().rsplit("\n\n", 1)
    assert table.splitlines()[-1].startswith("#2")            # the comparison's last row
    assert paired.startswith("paired bootstrap") and " #1 vs #2: CPM " in paired

    assert demo_cmd.run(argv) == 0                            # again: nothing new to run
    again = capsys.readouterr().out
    assert "queued in" in again and "going on" in again and " E1 trn " not in again
    assert len(_queue(runs)) == 2


def test_the_demo_cockpit_leaves_by_itself_only_when_told():
    """Leaving.after_run_s: unset (attach, the cockpit), a run's end changes nothing; set (the
    demo), the cockpit closes that many seconds after its run ends."""
    from luna_tui.leaving import Leaving

    calls: list = []

    class Host:
        def set_timer(self, delay, callback=None, **_kwargs):
            calls.append(delay)
            callback()

        def exit(self, result=None, return_code=0, message=None):
            calls.append("exit")

    leaving = Leaving(Host(), link=None, controls=None)
    leaving.run_ended()
    assert calls == [] and not leaving.left_by_itself and not leaving.hung_up
    leaving.after_run_s = 6.0
    leaving.run_ended()
    assert calls == [6.0, "exit"] and leaving.left_by_itself and leaving.outcome == "closed"
