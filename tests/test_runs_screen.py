"""The runs screen (`luna-tui runs --tui`) and the runs' index: every run with its state and
best score, filter, sort, marks and the overlay, Enter on a live run attaches, a run's options
queued again; and the index lists a run as its whole event file does.

Machine-independent by construction: the runs are event files the test writes (and one real
tiny run, compared with itself)."""

from __future__ import annotations

import os
import time

import pytest

from luna_core.run import events as ev
from luna_core.run import queue as qu
from luna_core.run.eventfile import read_events
from luna_core.run.index import IndexSink, read_index
from luna_core.run.runs import summarize, this_host
from luna_core.run.sinks import JsonlSink
from luna_tui.runs_app import RunsApp
from tests.cockpit_helpers import on_screen, wait_for
from tests.trainhelpers import run_dirs, run_loop


def write_run(runs, name, cpms, *, options=None, live=False, t0=1e9):
    run_dir = runs / "luna" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    sinks = [JsonlSink(str(run_dir / "events.jsonl")), IndexSink(str(run_dir))]

    def emit(e):
        for s in sinks:
            s(e)
    emit(ev.RunStarted(run_dir=str(run_dir), options={"lr": 0.001, "balanced": 0,
                                                      "comment": name.split("-")[-1],
                                                      **(options or {})},
                       epochs=3, start_epoch=1, trn_samples=100, val_samples=10, trn_pos=5,
                       val_pos=1, device="cpu", pid=os.getpid() if live else 999_999,
                       host=this_host() if live else "elsewhere", t=t0))
    for epoch, cpm in enumerate(cpms, 1):
        metrics = {"loss/all": 0.5 / epoch, "correct/pos": 0.0, "pr/recall": 0.1,
                   "pr/precision": 0.1, "pr/f1_score": 0.1 * epoch}
        if cpm is not None:
            metrics.update({"froc/cpm": cpm, "froc/cpm_low": cpm - 0.1,
                            "froc/cpm_high": cpm + 0.1})
        emit(ev.PhaseStarted(phase="trn", epoch=epoch, batch_count=10, sample_count=100,
                             t=t0 + epoch))
        emit(ev.EpochMetrics(phase="val", epoch=epoch, total_samples=100 * epoch,
                             metrics=metrics, neg_correct=9, neg_count=9, pos_correct=0,
                             pos_count=1, t=t0 + epoch + 0.5))
    if not live:
        emit(ev.RunFinished(state=ev.FINISHED, exit_code=0, t=t0 + 10))
    return str(run_dir)


@pytest.fixture
def workspace(tmp_path):
    runs = tmp_path / "runs"
    dirs = {
        "plain": write_run(runs, "2026-01-01_00.00.00-plain", [0.2, 0.3, 0.25], t0=1e9),
        "balanced": write_run(runs, "2026-01-02_00.00.00-balanced", [0.4, 0.6, 0.5],
                              options={"balanced": 1}, t0=1.1e9),
        "old": write_run(runs, "2026-01-03_00.00.00-old", [None, None], t0=1.2e9),
        # started now: a run's pid is its process only if that started before the run
        "live": write_run(runs, "2026-01-04_00.00.00-live", [0.1], live=True, t0=time.time()),
    }
    with qu.editing(str(runs)) as q:
        q.add(["--epochs", "3", "--augmented", "next"])
    return runs, dirs


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_runs_screen(snap_compare, workspace, size):
    runs, _dirs = workspace
    assert snap_compare(RunsApp(str(runs)), terminal_size=size)


async def test_mark_two_runs_and_overlay_them_and_enter_attaches_a_live_one(workspace):
    runs, dirs = workspace
    app = RunsApp(str(runs))
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "live", "queued", "CPM 0.600 [0.50–0.70] E2", "F1 0.200")
        assert [r.key for r in app.runs.shown][:4] == [dirs["plain"], dirs["balanced"],
                                                  dirs["old"], dirs["live"]]
        await pilot.press("space", "space")               # plain, then balanced
        assert app.runs.marked == [dirs["plain"], dirs["balanced"]]
        await pilot.press("o")
        plot = app.screen.query_one("#overlay")
        await wait_for(pilot, lambda: plot.has_class("-shown"))
        await on_screen(pilot, app, "validation CPM per epoch · 2 runs")
        plain = app.runs.colour(dirs["plain"])
        assert plain != app.runs.colour(dirs["balanced"])      # one colour per run...
        await pilot.press("s", "s")                        # ...and it stays when re-sorted
        assert app.runs.colour(dirs["plain"]) == plain
        await pilot.press("s", "s", "s", "s", "s", "s", "s", "s")   # back to run order
        table = app.screen.query_one("#runs")
        table.move_cursor(row=[r.key for r in app.runs.shown].index(dirs["live"]))
        await pilot.pause()
        assert app.runs.current().key == dirs["live"]
        await pilot.press("enter")
    assert app.return_value == ("attach", dirs["live"])


async def test_filter_sort_and_queue_a_copy(workspace):
    runs, dirs = workspace
    app = RunsApp(str(runs))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("slash", "minus", *"balanced", "enter")     # "-balanced"
        await wait_for(pilot, lambda: [r.key for r in app.runs.shown] == [dirs["balanced"]])
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.runs.shown) == 5)
        for _ in range(4):        # run ↓, epoch ↑ ↓: then best, highest first
            await pilot.press("s")
        assert app.runs.sort_column == "best" and not app.runs.sort_descending
        assert [r.key for r in app.runs.shown][:3] == [dirs["balanced"], dirs["plain"],
                                                  dirs["live"]]
        await pilot.press("a")                              # a copy of the balanced run
        await wait_for(pilot, lambda: len(app.runs.queue.entries) == 2)
    entry = qu.load(str(runs)).entries[-1]
    assert entry.argv == ["balanced", "--balanced", "1"]


def test_a_run_listed_from_its_index_is_the_run_its_event_file_tells(train_argv, tmp_path):
    code, _rec, _ = run_loop(train_argv("--epochs", "2", "--max-batches", "2"))
    assert code == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    whole = read_events(os.path.join(run_dir, "events.jsonl"))
    indexed = read_index(run_dir)
    assert not any(isinstance(e, (ev.BatchDone, ev.LogRecord)) for e in indexed)
    assert len(indexed) < len(whole) / 2
    assert summarize(run_dir, indexed) == summarize(run_dir, whole)
    from luna_core.run.compare import history_from_events

    a, b = history_from_events(run_dir, indexed), history_from_events(run_dir, whole)
    assert a.epochs == b.epochs and a.options == b.options


async def test_the_cockpit_opens_the_runs_screen_with_w_and_names_a_chosen_run(workspace):
    from luna_core.run.command_table import CommandChannel
    from luna_tui.app import CockpitApp
    from luna_tui.link.local import LocalLink
    from luna_tui.runs_app import RunsScreen
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, scripted_run

    runs, dirs = workspace
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.batch_ndx == 5)
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, runs_dir=str(runs))
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await on_screen(pilot, app, "? Help")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await on_screen(pilot, app, "CPM 0.600 [0.50–0.70] E2", "Queue: 1 entries")
        await pilot.press("q")                               # back, the cockpit still on
        await wait_for(pilot, lambda: not isinstance(app.screen, RunsScreen))
        assert app.is_running
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("enter")                            # the first run: plain
        await wait_for(pilot, lambda: not isinstance(app.screen, RunsScreen))
        await wait_for(pilot, lambda: any(f"luna-tui attach {dirs['plain']}" in str(args)
                                          for _t, args in app.notifier.toasts))


def test_runs_tui_opens_the_chosen_run_in_the_cockpit(workspace, monkeypatch):
    import luna_tui.runs_app
    import luna_tui.terminal
    from luna_tui import cli
    from luna_tui.subcommands import attach_cmd

    runs, dirs = workspace
    opened = []
    monkeypatch.setattr(luna_tui.terminal, "terminal_problem", lambda: None)
    choices = [("attach", dirs["live"]), None]          # Enter on the live run, then q
    monkeypatch.setattr(luna_tui.runs_app.RunsApp, "run", lambda self: choices.pop(0))
    monkeypatch.setattr(attach_cmd, "run", lambda argv: opened.append(argv) or 0)
    assert cli.main(["runs", "--tui", "--runs-dir", str(runs)]) == 0
    assert opened == [[dirs["live"], "--runs-dir", str(runs)]]


async def test_the_runs_screen_reads_the_folder_again_by_itself_and_keeps_the_cursor(workspace):
    from luna_tui import runs_app

    runs, dirs = workspace
    app = RunsApp(str(runs))
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "2026-01-04_00.00.00-live", "Queue: 1 entries, 1 waiting")
        screen = app.screen
        screen.query_one("#runs").move_cursor(row=1)
        chosen = screen.current().key
        # a run ends and a new one starts, the queue moves on: no key pressed
        write_run(runs, "2026-01-00_00.00.00-early", [0.3], t0=0.9e9)   # sorts first
        with qu.editing(str(runs)) as q:
            q.add(["--epochs", "1", "another"])
        screen.refresh_rows()                    # what the screen's timer calls
        await on_screen(pilot, app, "2026-01-00_00.00.00-early", "Queue: 2 entries")
        assert screen.current().key == chosen     # the cursor stayed on its run
        assert runs_app.REFRESH_S <= 5
        timers = [t for t in screen._timers if t._interval == runs_app.REFRESH_S]
        assert timers, "the screen reads the folder on a timer"


@pytest.mark.parametrize("opener", ["runs --tui", "cockpit w"])
async def test_the_runs_screen_has_its_own_help(workspace, opener):
    # issue 31: '?' did nothing in 'runs --tui' and showed the cockpit's help under w
    from luna_core.run.command_table import CommandChannel
    from luna_tui.app import CockpitApp
    from luna_tui.link.local import LocalLink
    from luna_tui.runs_app import RunsScreen
    from luna_tui.screens.help import HelpScreen
    from tests.cockpit_helpers import FROZEN_READING, frozen_clock, scripted_run

    runs, _dirs = workspace
    if opener == "runs --tui":
        app, back = RunsApp(str(runs)), "quit"
    else:
        collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.batch_ndx == 5)
        app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                         system_probe=lambda: FROZEN_READING, runs_dir=str(runs))
        back = "back to the cockpit"
    async with app.run_test(size=(120, 36)) as pilot:
        if opener == "cockpit w":
            await on_screen(pilot, app, "? Help")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await on_screen(pilot, app, "? Help", "r Reload")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = await on_screen(pilot, app, "read the runs folder and the queue now",
                               "OPTIONS THAT DIFFER", f"q       {back}")
        assert "Bottleneck" not in text and "Panes" not in text     # not the cockpit's
        assert ("comes back here" in text) == (opener == "runs --tui")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


def test_runs_tui_comes_back_to_the_runs_after_the_cockpit(workspace, monkeypatch):
    import luna_tui.runs_app
    import luna_tui.terminal
    from luna_tui import cli
    from luna_tui.subcommands import attach_cmd

    runs, dirs = workspace
    choices = [("history", dirs["plain"]), ("attach", dirs["live"]), None]
    shown_with = []

    def fake_run(self):
        shown_with.append(self.runs.this_run)
        return choices.pop(0)
    opened = []
    monkeypatch.setattr(luna_tui.terminal, "terminal_problem", lambda: None)
    monkeypatch.setattr(luna_tui.runs_app.RunsApp, "run", fake_run)
    monkeypatch.setattr(attach_cmd, "run", lambda argv: opened.append(argv[0]) or 0)
    assert cli.main(["runs", "--tui", "--runs-dir", str(runs)]) == 0
    assert opened == [dirs["plain"], dirs["live"]]
    assert shown_with == [None, dirs["plain"], dirs["live"]]      # the cursor on the last one


@pytest.mark.parametrize("size", [(120, 36), (160, 48)], ids=["120x36", "160x48"])
async def test_long_names_and_queued_options_leave_the_scores_on_screen(workspace, size):
    # issue 31: with queued entries the RUN column pushed every score off screen
    runs, dirs = workspace
    write_run(runs, "2026-01-05_00.00.00-balanced-offset-with-a-very-long-comment-indeed",
              [0.45], options={"balanced": 1, "augment_offset": 0.1}, t0=1.3e9)
    with qu.editing(str(runs)) as q:
        q.add(["sweep-lr0.0003", "--balanced", "--augment-offset", "0.1", "--augment-scale",
               "0.2", "--augment-noise", "25", "--epochs", "10", "--lr", "0.0003",
               "--data-dir", "/a/rather/long/path/to/the/luna16/data/folder"])
    app = RunsApp(str(runs))
    async with app.run_test(size=size) as pilot:
        text = await on_screen(pilot, app, "CPM 0.600 [0.50–0.70] E2", "CPM 0.450")
        lines = text.splitlines()
        long_run = next(ln for ln in lines if "CPM 0.450" in ln)
        assert "…" in long_run and "comment-indeed" in long_run     # cut in the middle
        queued = next(ln for ln in lines if "#2 sweep-lr0.0003" in ln)
        assert "--balanced" in queued                      # its options where a run's are
        header = next(ln for ln in lines if "BEST VALIDATION" in ln)
        assert header.index("BEST VALIDATION") < size[0] // 2


def test_a_run_stopped_inside_an_epoch_does_not_look_complete(tmp_path):
    # issue 31, item 8: a run stopped in its last epoch's training showed '2/2'
    from luna_core.run.runs import list_runs

    run_dir = write_run(tmp_path / "runs", "2026-01-06_00.00.00-cut", [0.3], live=True)
    sinks = [JsonlSink(os.path.join(run_dir, "events.jsonl")), IndexSink(run_dir)]
    for e in (ev.PhaseStarted(phase="trn", epoch=2, batch_count=10, sample_count=100, t=2e9),
              ev.RunFinished(state=ev.STOPPED, exit_code=0, t=2e9 + 1)):
        for sink in sinks:
            sink(e)
    (info,) = list_runs(str(tmp_path / "runs"))
    assert (info.state, info.epoch_text()) == (ev.STOPPED, "1/3, in E2")
    finished = write_run(tmp_path / "more", "2026-01-07_00.00.00-done", [0.3, 0.4, 0.5])
    (done,) = list_runs(os.path.dirname(os.path.dirname(finished)))
    assert done.epoch_text() == "3/3"


async def test_a_one_epoch_run_in_the_overlay_is_a_mark_with_its_label(workspace):
    # issue 31, item 8: a 1-epoch run was one braille dot, easy to miss
    runs, dirs = workspace
    app = RunsApp(str(runs))
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "live")
        table = app.screen.query_one("#runs")
        for key in (dirs["plain"], dirs["live"]):            # 3 epochs, 1 epoch
            table.move_cursor(row=[r.key for r in app.runs.shown].index(key))
            await pilot.pause()
            await pilot.press("space")
        await pilot.press("o")
        text = await on_screen(pilot, app, "validation CPM per epoch · 2 runs", "(1 epoch)")
        assert "●" in text


async def test_the_cursor_finds_the_run_left_under_a_relative_runs_folder(workspace,
                                                                         monkeypatch):
    runs, dirs = workspace
    monkeypatch.chdir(runs.parent)                       # runs_dir 'runs', as by default
    app = RunsApp("runs", this_run=dirs["balanced"])       # the run left: an absolute path
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "balanced")
        await wait_for(pilot, lambda: app.runs.current() is not None
                       and os.path.abspath(app.runs.current().key) == dirs["balanced"])
