"""The cockpit at every terminal size: views 1-4 and 7, the zoom, the plot keys and the toast
rules."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.run.events import BatchDone
from luna_tui.app import CockpitApp
from luna_tui.attach import build_attach_app
from luna_tui.link.local import LocalLink
from luna_tui.model import formatting as fmt
from luna_tui.model import layout as plan
from luna_tui.model import plotdata as pd
from luna_tui.model import views
from luna_tui.model.formatting import short_path
from luna_tui.widgets.trends import TrendPlot
from tests.cockpit_helpers import (
    FROZEN_READING,
    fake_time,
    frozen_clock,
    on_screen,
    screen_text,
    scripted_run,
    wait_for,
)
from tests.fakerun import FakeTrainer

SIZES = [(80, 24), (100, 32), (120, 36), (160, 48)]
IDS = [f"{w}x{h}" for w, h in SIZES]


def started_run(batch_ndx: int, **trainer_kwargs):
    """A fake run folded into a collector up to its first batch ``batch_ndx``, and the rest of
    its events, for a test to feed while the cockpit watches."""
    from luna_tui.model.collector import EventCollector

    collector = EventCollector()
    events = FakeTrainer(time_fn=fake_time(), **trainer_kwargs).events()
    for event in events:
        collector(event)
        if isinstance(event, BatchDone) and event.batch_ndx == batch_ndx:
            break
    return collector, events


def mid_epoch_three():
    return scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 3
                        and e.phase == "trn" and e.batch_ndx == 80,
                        epochs=4, trn_batches=200, val_batches=40)


def cockpit(collector=None) -> CockpitApp:
    return CockpitApp(LocalLink(collector or mid_epoch_three(), CommandChannel()),
                      clock=frozen_clock(), system_probe=lambda: FROZEN_READING)


def plot_rows(app) -> dict[str, int]:
    """Rows of plotting area of each trend plot on screen (its height less title and axis)."""
    return {p.id: p.size.height - plan.PLOT_CHROME_ROWS for p in app.query(TrendPlot)
            if p.display and p.region.height > 0}


def slot_rows(app) -> dict[str, int]:
    return {name: app.query_one(f"#slot-{name}").region.height for name in views.pane_names()
            if app.query_one(f"#slot-{name}").display}


async def settled(pilot, app) -> None:
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.1)


# ----------------------------------------------------------------------------- layout

@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_overview_gives_every_pane_rows_and_plots_ten_or_none(size):
    app = cockpit()
    async with app.run_test(size=size) as pilot:
        await on_screen(pilot, app, "? Help")
        await settled(pilot, app)
        rows = slot_rows(app)
        assert set(rows) == set(views.dashboard().panes)                 # every pane is there...
        assert all(r >= 1 for r in rows.values()), rows    # ...with rows, never zero
        collapsed = app.cockpit.layout_plan.collapsed
        for name in collapsed:                             # a collapsed one says something
            line = app.query_one(f"#{name}-line")
            assert rows[name] == 1 and line.display and str(line.render()).strip()
        text = screen_text(app)
        assert len(text.splitlines()) == size[1]
        plots = plot_rows(app)
        if "trends" in collapsed:
            assert plots == {} and "press 2 for the plots" in text
        else:
            assert len(plots) == 3 and min(plots.values()) >= plan.MIN_PLOT_ROWS, plots
        # the dashboard's essentials are on screen at every size
        assert "TRAINING" in text and "NODULES MISSED" in text


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_each_view_fills_the_screen_with_readable_plots(size):
    app = cockpit()
    async with app.run_test(size=size) as pilot:
        await on_screen(pilot, app, "? Help")
        await pilot.press("2")
        await settled(pilot, app)
        plots = plot_rows(app)
        assert len(plots) == 3 and min(plots.values()) >= plan.MIN_PLOT_ROWS, plots
        assert set(slot_rows(app)) == {"trends"}
        text = screen_text(app)
        assert text.splitlines()[0].startswith(" TRAINING E3/4 trn 81/200")   # status line

        await pilot.press("3")
        await settled(pilot, app)
        assert set(slot_rows(app)) == {"log"} and plot_rows(app) == {}
        assert slot_rows(app)["log"] == size[1] - 2          # all but status and footer
        await on_screen(pilot, app, "E2 val")

        await pilot.press("4")
        await settled(pilot, app)
        rows = slot_rows(app)
        assert set(rows) == {"system", "bottleneck"} and min(rows.values()) >= 3
        await on_screen(pilot, app, "GPU0 NVIDIA H100", "loader-bound")

        await pilot.press("1")
        await settled(pilot, app)
        assert set(slot_rows(app)) == set(views.dashboard().panes)


@pytest.mark.parametrize("size", [SIZES[0], SIZES[-1]], ids=[IDS[0], IDS[-1]])
async def test_view_7_lists_every_finished_epoch_newest_first(size):
    app = cockpit()                                  # in E3's training: E1 and E2 are done
    async with app.run_test(size=size) as pilot:
        await on_screen(pilot, app, "? Help")
        await pilot.press("7")
        await settled(pilot, app)
        assert set(slot_rows(app)) == {"epochs"}
        text = screen_text(app)
        rows = [ln for ln in text.splitlines() if re.match(r"\W*E\d ", ln)]
        assert [re.search(r"E(\d)", ln).group(1) for ln in rows] == ["2", "1"], text
        assert "val loss" in text and "best: val loss E" in text


def test_the_epoch_table_marks_each_column_s_best_and_leaves_out_empty_ones():
    from rich.console import Console

    from luna_tui.model.snapshot import EpochPoint, RunSnapshot
    from luna_tui.widgets.epoch_table import render_epoch_table

    def point(epoch, loss, pos, cpm=None):
        return EpochPoint(epoch, loss, loss, pos, 90.0, cpm=cpm)

    snap = RunSnapshot(history={"trn": (point(1, 0.5, 10.0), point(2, 0.3, 40.0)),
                                "val": (point(1, 0.45, 20.0), point(2, 0.47, 50.0))})
    console = Console(width=100, record=True)
    console.print(render_epoch_table(snap, 100))
    text = console.export_text()
    assert [ln.split()[0] for ln in text.splitlines()[1:3]] == ["E2", "E1"]
    assert "CPM" not in text                          # no validation scored: no column
    assert text.splitlines()[-1] == ("best: val loss E1 0.4500 · val nodules correct E2 "
                                     "50.0 %")
    table = render_epoch_table(snap, 100).renderables[0]
    bold = {cell.plain for column in table.columns for cell in column.cells
            if getattr(cell, "spans", None)}            # stylized: the column's best
    assert bold == {"0.3000", "0.4500", "40.0 %", "50.0 %"}
    assert "no epoch finished yet" in render_epoch_table(RunSnapshot()).plain


async def test_z_zooms_the_focused_pane_and_back():
    app = cockpit()
    async with app.run_test(size=(100, 32)) as pilot:
        await on_screen(pilot, app, "? Help")
        app.query_one("#classes").focus()
        await pilot.press("z")
        await settled(pilot, app)
        assert set(slot_rows(app)) == {"classes"} and app.cockpit.zoomed == "classes"
        await on_screen(pilot, app, "val E2", "view: classes")
        await pilot.press("z")
        await settled(pilot, app)
        assert app.cockpit.zoomed is None and set(slot_rows(app)) == set(views.dashboard().panes)
        app.set_focus(None)
        await pilot.press("z")                       # nothing focused: the trend plots
        await settled(pilot, app)
        assert app.cockpit.zoomed == "trends"
        assert min(plot_rows(app).values()) >= plan.MIN_PLOT_ROWS


@pytest.mark.parametrize("size", [(120, 36), (160, 48)], ids=["120x36", "160x48"])
async def test_each_pane_gets_the_width_its_lines_need_after_the_first_epoch(size):
    """Issue 21 item 5: at 120x36 progress had 38 columns and wrapped mid-value while the
    class table beside it had 82, and System / Bottleneck shrank to one line each."""
    app = cockpit()
    async with app.run_test(size=size) as pilot:
        await on_screen(pilot, app, "? Help")
        # (System and Bottleneck get their rows once the first system reading has come)
        await wait_for(pilot, lambda: not app.cockpit.layout_plan.collapsed & {
            "progress", "classes", "system", "bottleneck"})
        await settled(pilot, app)
        progress = app.query_one("#progress").content_size.width
        table = app.query_one("#classes").content_size.width
        assert progress >= plan.PROGRESS_COLS - 4 and table >= plan.TABLE_COMPACT_COLS - 4
        text = screen_text(app)
        # every line whole: a value is never split from its label or its unit
        assert "trn batch 81/200" in text and "training ends 12:00" in text
        assert "97 % util · 31.2/79.6 GiB · 63 °C" in text and "312/700 W" in text
        assert re.search(r"(val|trn) E2: .*nodules right.*, all \d", text)
        lines = text.splitlines()
        for needle in ("class ", "pos "):              # the table's columns all there
            row = next(line for line in lines if needle in line and "┃" in line)
            assert "recall" in row or "0.000" in row, row


def test_wrap_parts_breaks_only_between_parts():
    parts = ["epoch 2/3", "trn batch 81/200", "713 samples/s"]
    assert fmt.wrap_parts(parts, 80) == ["epoch 2/3 · trn batch 81/200 · 713 samples/s"]
    assert fmt.wrap_parts(parts, 30) == ["epoch 2/3 · trn batch 81/200", "713 samples/s"]
    assert fmt.wrap_parts(parts, 30, first=12) == ["epoch 2/3", "trn batch 81/200",
                                                   "713 samples/s"]
    assert fmt.wrap_parts(["a very long part indeed"], 5) == ["a very long part indeed"]


def test_paired_widths_give_progress_its_columns_first():
    for width in (120, 130, 140, 160, 200):
        table = plan.paired_side_cols(width)
        assert width - table >= plan.PROGRESS_COLS
        assert table == plan.TABLE_COLS or table >= plan.TABLE_COMPACT_COLS
        assert width - plan.bottleneck_cols(width) >= min(plan.SYSTEM_COLS, width // 2)
    assert plan.paired_side_cols(160) == plan.TABLE_COLS


def test_layout_plans_at_the_four_sizes():
    natural = {"progress": 8, "classes": 11, "system": 7, "bottleneck": 5}
    for width, height in SIZES:
        lay = plan.overview(width, height, natural)
        assert sum(lay.rows[p] for p in views.dashboard().panes if not (
            lay.wide and p in ("classes", "bottleneck"))) <= height - plan.FOOTER_ROWS
        assert lay.plot_rows() == 0 or lay.plot_rows() >= plan.MIN_PLOT_ROWS
        assert plan.fill_view("trends", width, height).plot_rows() >= plan.MIN_PLOT_ROWS
    assert "trends" in plan.overview(80, 24, natural).collapsed
    assert plan.overview(160, 48, natural).collapsed == frozenset()


# ----------------------------------------------------------------------------- plots

def test_smoothing_is_a_debiased_ema():
    assert pd.ema([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])   # no pull to 0
    got = pd.ema([1.0, 3.0], 0.5)
    assert got == pytest.approx([1.0, (0.25 * 1 + 0.5 * 3) / 0.75])
    assert pd.ema([1.0, 2.0], 0.0) == [1.0, 2.0]


def test_outliers_are_clipped_at_a_robust_limit_and_marked():
    ys = [10.0] + [1.0 + 0.01 * i for i in range(40)]
    limit = pd.clip_limit(ys)
    assert limit is not None and 1.3 < limit < 2.0
    shown, cx, cy = pd.clipped(list(range(len(ys))), ys, limit)
    assert cx == [0] and cy == [limit] and max(shown) == limit
    assert pd.clip_limit([1.0 + 0.01 * i for i in range(40)]) is None


def test_titles_carry_the_latest_value_and_the_best_with_its_epoch():
    pts = [(1, 0.5), (2, 0.3), (3, 0.4)]
    assert pd.value_title("loss", "val", pts, True, ".2f") == "loss · val 0.40 · best 0.30 E2"
    assert pd.value_title("% ok", "val", [(1, 10.0), (2, 50.0)], False, ".0f") == \
        "% ok · val 50 · best 50 E2"
    assert pd.value_title("loss", "val", [], True, ".2f") == "loss"


async def test_the_batch_loss_title_keeps_its_latest_value_at_80_columns():
    app = cockpit()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await on_screen(pilot, app, "loss 0.", "(EMA 0.9)")
        await pilot.press("s")
        await on_screen(pilot, app, "loss 0.", "(raw)")


async def test_plot_keys_toggle_smoothing_log_scale_and_the_x_axis():
    app = cockpit()
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "(EMA 0.9)")
        await pilot.press("2", "s")
        await on_screen(pilot, app, "(raw)")
        await pilot.press("s")
        await on_screen(pilot, app, "(EMA 0.9)")
        assert "(EMA 0.9, log)" not in screen_text(app)       # the batch loss: linear
        await pilot.press("y")                                   # log on both loss plots
        await on_screen(pilot, app, "(EMA 0.9, log)", "loss per epoch (log)")
        await pilot.press("y")                                   # and off on both
        await wait_for(pilot, lambda: "(log)" not in screen_text(app)
                       and ", log)" not in screen_text(app))
        await pilot.press("x")
        text = await on_screen(pilot, app, "training samples", "5k", "10k")
        assert app.query_one("#trends").options.x_samples
        tick_rows = [line for line in text.splitlines() if re.search(r"\b5k\b", line)]
        assert tick_rows and not any(re.search(r"\d\.\d", row) for row in tick_rows)
        # best-so-far in the titles
        await on_screen(pilot, app, "loss per epoch", "· best ", "CPM x100, nodules % · val")


def test_palette_gives_each_series_its_own_marker():
    markers = [m for _c, m in pd.SERIES.values()]
    assert len(set(markers)) == len(markers)
    assert pd.TRN_COLOR != pd.VAL_COLOR


# ----------------------------------------------------------------------------- toasts

def test_a_checkpoint_toast_names_the_file_from_the_run_directory_on():
    assert short_path("/r/runs/luna/x/checkpoints/e001-b000120.pt", "/r/runs/luna/x") == \
        "checkpoints/e001-b000120.pt"
    assert short_path("/" + "a" * 100 + "/ck.pt", "/elsewhere").endswith("/ck.pt")
    assert len(short_path("/" + "a" * 100 + "/ck.pt", "/elsewhere")) == 60


def write_run_with_many_checkpoints(run_dir, epochs=12, trn_batches=8) -> int:
    """An event file of a finished fake run: an epoch-end checkpoint every epoch, and a
    requested one in each epoch as well."""
    os.makedirs(run_dir, exist_ok=True)
    trainer = FakeTrainer(epochs=epochs, trn_batches=trn_batches, val_batches=2,
                          time_fn=fake_time(), run_dir=str(run_dir))
    count = 0
    with open(os.path.join(run_dir, "events.jsonl"), "w") as f:
        for event in trainer.events():
            if isinstance(event, ev.RunStarted):
                event = dataclasses.replace(event, pid=1, host="elsewhere")
            f.write(json.dumps(ev.event_to_dict(event)) + "\n")
            if isinstance(event, ev.CheckpointSaved):
                count += 1
                asked = dataclasses.replace(event, reason="request",
                                            path=event.path.replace(".pt", "-asked.pt"))
                f.write(json.dumps(ev.event_to_dict(asked)) + "\n")
                count += 1
    return count


async def test_attaching_to_a_run_with_many_checkpoints_toasts_none_of_them(tmp_path):
    saved = write_run_with_many_checkpoints(tmp_path / "run")
    assert saved >= 24
    app = build_attach_app(str(tmp_path / "run"), poll_interval=0.05, clock=frozen_clock(),
                           system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await on_screen(pilot, app, "FINISHED")
        for _ in range(10):                     # several polls of the replayed history
            await pilot.pause(0.06)
        text = screen_text(app)
        assert "Checkpoint saved" not in text and "▌" not in text
        assert app.notifier.toasts == []
        assert f"{saved} checkpoint(s)" in text or "checkpoint" in text


async def test_epoch_checkpoints_never_toast_but_asked_ones_do_and_two_at_most():
    collector = scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 2
                             and e.batch_ndx == 3, epochs=3, trn_batches=20, val_batches=4)
    app = cockpit(collector)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await on_screen(pilot, app, "TRAINING")
        snap = collector.snapshot()
        epoch_ck = ev.CheckpointSaved(path=snap.run_dir + "/checkpoints/e002-end.pt",
                                      reason="epoch", epoch=2, batch_ndx=20,
                                      total_samples=1280)
        collector(epoch_ck)
        await wait_for(pilot, lambda: app.snap.checkpoint_total == snap.checkpoint_total + 1)
        await pilot.pause(0.2)
        assert "Checkpoint saved" not in screen_text(app) and app.notifier.toasts == []
        asked = dataclasses.replace(epoch_ck, reason="request",
                                    path=snap.run_dir + "/checkpoints/e002-b000004.pt")
        collector(asked)
        text = await on_screen(pilot, app, "Checkpoint saved (request)")
        assert "checkpoints/e002-b000004.pt" in text
        for k in range(3):
            app.toast(f"note {k}", title=f"T{k}")
        await pilot.pause(0.2)
        assert len(app.notifier.toasts) == 2
        text = screen_text(app)
        assert "T2" in text and "T1" in text and "Checkpoint saved" not in text


async def test_nodules_missed_toasts_once_when_it_turns_on_and_says_what_to_try():
    collector, events = started_run(3, epochs=3, trn_batches=20, val_batches=4)
    app = cockpit(collector)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await on_screen(pilot, app, "TRAINING")
        assert app.notifier.toasts == []
        for event in events:
            collector(event)
            if isinstance(event, ev.EpochMetrics) and event.phase == "val":
                break
        text = await on_screen(pilot, app, "NODULES MISSED", "--balanced")
        assert "--augmented" in text.replace("\n", " ") or "--augmented" in str(app.notifier.toasts)
        titles = [args[1] for _t, args in app.notifier.toasts]
        assert titles.count("NODULES MISSED") == 1
        for event in events:                          # epoch 2 keeps missing them: no repeat
            collector(event)
            if isinstance(event, ev.EpochMetrics) and event.epoch == 2:
                break
        await pilot.pause(0.3)
        assert [args[1] for _t, args in app.notifier.toasts].count("NODULES MISSED") == 1


# ----------------------------------------------------------------------------- baseline

async def test_a_baseline_shows_in_the_plots_and_the_class_table(tmp_path):
    from luna_core.run.compare import read_history

    # the live run validated E2 at 12,800 samples (200 batches of 32 an epoch); the baseline
    # has 300 batches an epoch: 9,600 and 19,200 samples at its E1 and E2, either side
    write_run_with_many_checkpoints(tmp_path / "runs" / "luna" / "base", epochs=4,
                                    trn_batches=300)
    baseline = read_history(str(tmp_path / "runs" / "luna" / "base"))
    assert [r.total_samples for r in baseline.epochs] == [9600, 19200, 28800, 38400]
    collector = mid_epoch_three()
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, baseline=baseline)
    async with app.run_test(size=(160, 48)) as pilot:
        # both runs have LUNA16's CPM: the plot and the comparison use it
        text = await on_screen(pilot, app, "base CPM", "vs baseline (between its E1 and E2")
        pm = collector.snapshot().metrics["val"]
        assert pm.total_samples == 12800 and "at 12,800 samples)" in text
        e1, e2 = (r.values["froc/cpm"] for r in baseline.epochs[:2])
        theirs = e1 + (12800 - 9600) / (19200 - 9600) * (e2 - e1)   # on the line between
        diff = pm.get("froc/cpm") - theirs
        assert ("CPM level" in text) if abs(diff) < 1e-3 else (f"CPM {diff:+.3f}" in text)
        # b picks another one (or none) from the runs dir
        app.cockpit.runs_dir = str(tmp_path / "runs")
        await pilot.press("b")
        await on_screen(pilot, app, "no baseline", "base")
        await pilot.press("enter")                  # the first entry: no baseline
        await wait_for(pilot, lambda: app.cockpit.baseline is None)
        await wait_for(pilot, lambda: "vs baseline" not in screen_text(app))
        await pilot.press("b")
        await on_screen(pilot, app, "best CPM")
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.cockpit.baseline is not None)
        assert app.cockpit.baseline.run_dir.endswith("base")


# ----------------------------------------------------------------------------- bell, OSC

def test_desktop_notification_escapes_and_their_tmux_passthrough():
    from luna_tui.model.alarm import desktop_notification

    assert desktop_notification("Run finished", "runs/a;b\x1b") == (
        "\x1b]9;Run finished: runs/a,b \a\x1b]777;notify;Run finished;runs/a,b \a")
    wrapped = desktop_notification("T", "b", in_tmux=True)
    assert wrapped == ("\x1bPtmux;\x1b\x1b]9;T: b\a\x1b\\"
                       "\x1bPtmux;\x1b\x1b]777;notify;T;b\a\x1b\\")


@pytest.mark.parametrize("quiet, tmux", [(False, False), (False, True), (True, False)])
async def test_alarms_and_the_end_ring_the_bell_and_notify_the_desktop(quiet, tmux,
                                                                       monkeypatch):
    if tmux:
        monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    else:
        monkeypatch.delenv("TMUX", raising=False)
    collector, events = started_run(2, epochs=2, trn_batches=10, val_batches=2)
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, quiet=quiet)
    written: list[str] = []
    monkeypatch.setattr(app, "terminal_write", written.append)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await on_screen(pilot, app, "TRAINING")
        assert written == []
        for event in events:                      # the rest: the alarm, then the end
            collector(event)
        await on_screen(pilot, app, "FINISHED")
        await wait_for(pilot, lambda: len(written) == (0 if quiet else 2))
    if quiet:
        assert written == []
        return
    titles = ["NODULES MISSED", "Run finished"]
    assert len(written) == 2 and all(w.startswith("\a") for w in written)
    for w, title in zip(written, titles, strict=True):
        assert f"]9;{title}" in w and f"]777;notify;{title}" in w
        assert w.count("\x1bPtmux;") == (2 if tmux else 0)


# ----------------------------------------------------------------------------- steering

async def test_brackets_halve_and_double_the_lr_after_a_confirmation():
    from luna_tui.model.collector import EventCollector
    from luna_tui.screens.confirm import ConfirmSetting

    collector, channel = EventCollector(), CommandChannel()
    trainer = FakeTrainer(sinks=[collector], commands=channel, epochs=50, trn_batches=400,
                          val_batches=10, batch_delay=0.005)
    app = CockpitApp(LocalLink(collector, channel, runner=trainer.main), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING, poll_interval=0.05)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await on_screen(pilot, app, "lr 0.001 · momentum 0.99")
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmSetting))
        await on_screen(pilot, app, "lr 0.001 → 0.002", "momentum 0.99 stays")
        await pilot.press("n")                          # no: nothing is sent
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmSetting))
        await pilot.pause(0.2)
        assert collector.snapshot().lr == 0.001
        await pilot.press("left_square_bracket")
        await on_screen(pilot, app, "lr 0.001 → 0.0005")
        await pilot.press("y")
        await wait_for(pilot, lambda: collector.snapshot().lr == 0.0005)
        await on_screen(pilot, app, "lr 0.0005 · momentum 0.99")
        await pilot.press("2")
        await on_screen(pilot, app, "lr 0.0005")                  # the status line
        await pilot.press("ctrl+c")                     # stops the fake run and leaves


@pytest.mark.parametrize("width", [80, 100, 160])
async def test_the_status_line_of_views_2_to_4_puts_loss_and_time_left_first_never_cut(width):
    app = cockpit()
    async with app.run_test(size=(width, 24)) as pilot:
        await on_screen(pilot, app, "? Help")
        for key in ("2", "3", "4"):
            await pilot.press(key)
            await settled(pilot, app)
            status = screen_text(app).splitlines()[0].strip()
            assert status.startswith("TRAINING E3/4 trn ") and "…" not in status
            parts = status.split(" · ")
            assert parts[1].startswith("loss ") and len(parts[1].split()[1]) == 6  # 0.1234
            assert parts[2].startswith("run ends in ")
            # a part is there whole or not at all
            known = ("TRAINING", "loss ", "run ends in ", "samples/s", "lr ", "view: ")
            assert all(any(k in part for k in known) for part in parts), status
            if width >= 100:
                assert any(part.startswith("view: ") for part in parts), status
            if width >= 160:                           # room for everything
                assert len(parts) == 6 and parts[-1].startswith("view: ")


def test_the_status_line_leaves_out_whole_parts_least_important_first():
    snap = mid_epoch_three().snapshot()
    full = pd_status(snap, 10_000)
    assert full.split(" · ")[-1] == "view: trends (1: all)"
    for width in range(len(full.split(" · ")[0]), len(full) + 1):
        line = pd_status(snap, width)
        assert len(line) <= width
        assert set(line.split(" · ")) <= set(full.split(" · "))
    assert pd_status(snap, 40).count(" · ") <= 1


def pd_status(snap, width):
    from luna_tui.model.pane_lines import status_line

    return status_line(snap, "trends", width, overview_key="1")


@pytest.mark.parametrize("reveal", ["3", "resize"])
async def test_log_lines_that_arrived_while_the_log_was_collapsed_are_laid_out_anew(reveal):
    collector = mid_epoch_three()
    app = cockpit(collector)
    message = "the loader read series 6279.6001.100 in 3.2 s; the next epoch starts warm"
    async with app.run_test(size=(120, 36)) as pilot:
        await on_screen(pilot, app, "? Help")
        # one line: the pane is narrow (once the first system reading has sized the System
        # and Bottleneck panes: before it, under load, the log may still have its rows)
        await wait_for(pilot, lambda: "log" in app.cockpit.layout_plan.collapsed)
        collector(ev.LogRecord(level="INFO", message=message))
        await wait_for(pilot, lambda: app.snap.log_total == collector.snapshot().log_total)
        await settled(pilot, app)
        if reveal == "3":
            await pilot.press("3")
        else:
            await pilot.resize_terminal(160, 48)
        await settled(pilot, app)
        await on_screen(pilot, app, message)                  # on one line, whole


@pytest.mark.parametrize("trn_batches, said", [
    (200, "vs baseline (its E2 at 12,800 samples): "),            # the same epochs
    (8, "vs baseline: no value at 12,800 samples (its last validation: E4 at 1,024)"),
    (500, "vs baseline: it had not validated by 12,800 samples"),
])
def test_the_baseline_is_compared_at_the_same_number_of_samples_or_says_it_has_none(
        tmp_path, trn_batches, said):
    from luna_core.run.compare import read_history
    from luna_tui.model.pane_lines import baseline_line

    write_run_with_many_checkpoints(tmp_path / "base", epochs=4, trn_batches=trn_batches)
    line = baseline_line(mid_epoch_three().snapshot(), read_history(str(tmp_path / "base")))
    assert line.startswith(said), line


def test_the_baseline_is_compared_by_cpm_when_both_runs_have_it(tmp_path):
    from luna_core.run.compare import EpochRow, RunHistory, read_history
    from luna_tui.model.pane_lines import baseline_line

    write_run_with_many_checkpoints(tmp_path / "base", epochs=4, trn_batches=200)
    base = read_history(str(tmp_path / "base"))
    snap = mid_epoch_three().snapshot()
    assert baseline_line(snap, base).endswith("CPM level, loss level")   # the same fake run
    without = RunHistory(base.run_dir, base.options, [
        EpochRow(r.epoch, r.total_samples,
                 {k: v for k, v in r.values.items() if not k.startswith("froc/")})
        for r in base.epochs])
    line = baseline_line(snap, without)
    assert "recall level" in line and "CPM" not in line


# ----------------------------------------------------------------------------- diagnostics

@pytest.mark.parametrize("size, grid", [((80, 24), False), ((100, 32), False),
                                        ((160, 48), True)], ids=["80x24", "100x32", "160x48"])
async def test_diagnostics_show_every_plot_readably_at_any_size(size, grid):
    from luna_tui.model import score_plots as dg

    app = cockpit()
    async with app.run_test(size=size) as pilot:
        await on_screen(pilot, app, "? Help")
        await pilot.press("5")
        await settled(pilot, app)
        assert set(slot_rows(app)) == {"diagnostics"}
        seen = []
        for _ in dg.PLOTS:
            shown = [n for n in dg.PLOTS if app.query_one(f"#diag-{n}").display]
            assert shown == (list(dg.PLOTS) if grid else [shown[0]])
            for name in shown:
                plot = app.query_one(f"#diag-{name}")
                if name != "confusion":        # a plot: at least 10 rows of plotting area
                    assert plot.size.height - plan.PLOT_CHROME_ROWS >= plan.MIN_PLOT_ROWS
            seen += shown
            await pilot.press("n")
            await settled(pilot, app)
        assert set(seen) == set(dg.PLOTS)      # n went through all four (or all at once)
        text = screen_text(app)
        assert "val E2: AUC 0.80 [0.62–0.93]: better than chance" in text
        assert "nodules scored below 0.1" in text


def _score(hist_pos, hist_neg):
    return {"hist_bins": 20, "hist_pos": hist_pos, "hist_neg": hist_neg}


def test_the_diagnostics_line_reads_the_histograms():
    from luna_tui.model.score_plots import reading

    low = reading(_score([9, 0, 0, 1, 0, 0, 2] + [0] * 13, [990, 10] + [0] * 18))
    assert low.startswith("nodules scored below 0.1: 9 of 12 — the model ranks them with the "
                          "background")
    high = reading(_score([0] * 10 + [1] * 10, [1000] + [0] * 19))
    assert high.startswith("nodules scored 0.5 or more: 10 of 10")
    middle = reading(_score([1, 0, 3, 3, 3] + [0] * 15, [900, 50, 50] + [0] * 17))
    assert middle.startswith("nodules between 0.1 and 0.5: 9 of 10")
    assert reading(_score([0] * 20, [5] * 20)).startswith("no nodule")


def test_the_confusion_counts_beside_the_validation_before():
    from luna_tui.model.score_plots import confusion_lines

    now = {"confusion": {"tp": 3, "fp": 40, "tn": 1200, "fn": 9}, "threshold": 0.5,
           "auc": 0.91, "average_precision": 0.3, "nodules": 12, "scans": 88,
           "nodules_without_candidate": 2}
    before = {"confusion": {"tp": 1, "fp": 10, "tn": 1230, "fn": 11}, "auc": 0.8,
              "average_precision": 0.2}
    lines = confusion_lines(now, before, 3, 2)
    assert lines[0] == "at probability 0.5, val E3 (E2 in brackets)"
    assert lines[2].split() == ["nodule", "3", "(1)", "9", "(11)"]
    assert lines[3].split() == ["not", "nodule", "40", "(10)", "1,200", "(1,230)"]
    assert lines[4] == "AUC 0.91 (0.80) · AP 0.30 (0.20)"
    assert lines[5] == "12 nodules in 88 scans counted; 2 more with no validation candidate"


async def test_tab_reaches_a_collapsed_class_table_and_z_zooms_it():
    from tests.test_cockpit_snapshots import cockpit, mid_epoch_two

    app = cockpit(mid_epoch_two())
    async with app.run_test(size=(80, 20)) as pilot:         # too short for the table
        await on_screen(pilot, app, "!! NODULES MISSED · val E1")    # the table's one line
        screen = app.screen
        assert "classes" in screen.layout_plan.collapsed
        for _ in range(12):
            await pilot.press("tab")
            if getattr(app.focused, "id", None) == "classes-line":
                break
        assert app.focused.id == "classes-line"
        await pilot.press("z")
        text = await on_screen(pilot, app, "class", "k of n", "LUNA16 CPM")
        assert screen.zoomed == "classes" and "NODULES MISSED" in text
