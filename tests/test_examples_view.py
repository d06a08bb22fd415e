"""The examples view (6) and its detail screen, in half-block mode (what tmux gets): cells
that fit the screen, the kind and epoch keys, paging, three planes, images off; and how the
image mode is chosen before the app starts.

Machine-independent by construction: the examples file is drawn by the test (a sphere of
soft tissue in lung), not produced by training."""

from __future__ import annotations

import pytest

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_tui.app import CockpitApp
from luna_tui.images import image_widget, in_multiplexer, resolve
from luna_tui.link.local import LocalLink
from luna_tui.screens.example_detail import ExampleDetail
from luna_tui.widgets.examples import ExampleCell, ExamplesPane
from tests.cockpit_helpers import (
    FROZEN_READING,
    frozen_clock,
    on_screen,
    screen_text,
    scripted_run,
    wait_for,
    write_fake_examples,
)


def with_examples(tmp_path, epochs=(1, 2), counts=None):
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.epoch == 3
                             and e.phase == "trn" and e.batch_ndx == 120,
                             epochs=4, trn_batches=200, val_batches=40)
    for epoch in epochs:
        path = write_fake_examples(str(tmp_path / f"E{epoch:03d}.zip"), epoch, counts=counts)
        collector(ev.ExamplesSaved(epoch=epoch, path=path, misses=8, false_alarms=8, best=8,
                                   t=1.0))
    return collector


def cockpit(collector, mode="halfblock") -> CockpitApp:
    return CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                      system_probe=lambda: FROZEN_READING, image_class=image_widget(mode))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    return with_examples(tmp_path_factory.mktemp("drawn"))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_examples_view(snap_compare, drawn, size):
    assert snap_compare(cockpit(drawn), terminal_size=size, press=["6"])


def test_example_detail_screen(snap_compare, drawn):
    assert snap_compare(cockpit(drawn), terminal_size=(120, 36), press=["6", "enter"])


def half_block_pixels(widget) -> list[list[int]]:
    """The grey level of each pixel a half-block image widget draws: two a cell, the upper
    half in the foreground colour of '▀', the lower in the background."""
    rows: list[list[int]] = []
    for strip in widget.render_lines(widget.region.reset_offset):
        upper, lower = [], []
        for seg in strip:
            if seg.text and seg.style is not None and seg.style.color is not None:
                for _ch in seg.text:
                    upper.append(seg.style.color.get_truecolor().red)
                    lower.append(seg.style.bgcolor.get_truecolor().red)
        if upper:
            rows += [upper, lower]
    return rows


async def test_cells_fit_the_screen_and_the_keys_walk_kinds_epochs_and_pages(drawn):
    app = cockpit(drawn)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "val E2 worst misses", "#1 p 0.010", "#2 p 0.020")
        pane = app.query_one(ExamplesPane)
        cells = list(app.query(ExampleCell))
        assert 2 <= len(cells) < 8                       # at least two, readably
        assert all(c.region.height == 13 for c in cells)
        # in half-blocks the nodule (40 HU) is drawn brighter than the lung (-850 HU) round it
        pixels = half_block_pixels(cells[2].query_one(".example-image"))
        h, w = len(pixels), len(pixels[0])
        assert pixels[h // 2][w // 2] > 150 and pixels[1][1] < 60 and pixels[h - 2][1] < 60
        await pilot.press("pagedown")
        await on_screen(pilot, app, f"#{len(cells) + 1} p ")
        await pilot.press("k")
        await on_screen(pilot, app, "val E2 false alarms", "#1 p 0.980", "no annotation")
        await pilot.press("k")
        await on_screen(pilot, app, "val E2 best hits", "#1 p 0.970")
        await pilot.press("comma")
        await on_screen(pilot, app, "val E1 best hits", "epoch (1/2)")
        await pilot.press("full_stop")
        await on_screen(pilot, app, "val E2 best hits", "epoch (2/2)")
        assert pane.kind == "best"


async def test_enter_opens_three_planes_and_arrows_step_the_axial_slice(drawn):
    app = cockpit(drawn)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "#1 p 0.010")
        await wait_for(pilot, lambda: isinstance(app.focused, ExampleCell))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExampleDetail))
        await on_screen(pilot, app, "axial · slice 17/32 (centre)", "coronal", "sagittal",
                        "probability 0.0100", "diameter 4.2 mm")
        await pilot.press("up", "up")
        await on_screen(pilot, app, "axial · slice 19/32")
        for _ in range(14):                             # to the last slice, and no further
            await pilot.press("up")
        await on_screen(pilot, app, "axial · slice 32/32")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExampleDetail))
        await pilot.press("1", "6")                   # back to the view: Enter opens again
        await wait_for(pilot, lambda: isinstance(app.focused, ExampleCell))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExampleDetail))


async def test_images_off_and_no_examples_yet_say_so(tmp_path):
    app = cockpit(with_examples(tmp_path), mode="off")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "(images off)", "#1 p 0.010")
    app = cockpit(with_examples(tmp_path, epochs=()))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "no examples yet")


async def test_a_kind_with_no_examples_says_what_that_means(tmp_path):
    app = cockpit(with_examples(tmp_path, counts={"misses": 0}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await on_screen(pilot, app, "worst misses (nodules scored 0.5 or less): 0",
                        "none: every nodule scored above 0.5")
        await pilot.press("k")
        await on_screen(pilot, app, "false alarms (non-nodules scored above 0.5): 8")
        assert "none:" not in screen_text(app)


async def test_a_pruned_epoch_says_it_is_no_longer_kept(tmp_path):
    collector = with_examples(tmp_path)
    (tmp_path / "E001.zip").unlink()
    app = cockpit(collector)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "comma")
        await on_screen(pilot, app, "E1: no longer kept (--keep-examples)")
        assert "Traceback" not in screen_text(app)


@pytest.mark.parametrize("env, mode, want", [
    ({"TMUX": "/tmp/tmux-0/default,1,0", "TERM": "tmux-256color"}, "auto", "halfblock"),
    ({"STY": "123.pts-0", "TERM": "screen"}, "auto", "halfblock"),
    ({"TERM": "xterm-kitty"}, "kitty", "kitty"),
    ({"TMUX": "x"}, "sixel", "sixel"),                      # asked for: used as asked
    ({"TERM": "xterm-256color"}, "off", "off"),
])
def test_the_image_mode_is_half_blocks_in_tmux_and_as_asked_otherwise(env, mode, want):
    assert resolve(mode, env) == want
    assert in_multiplexer(env) == ("TMUX" in env or "STY" in env)


def test_auto_without_a_terminal_is_half_blocks():
    # pytest has no terminal: textual-image finds no graphics protocol
    assert resolve("auto", {"TERM": "xterm-256color"}) == "halfblock"


@pytest.mark.parametrize("size", [(80, 24), (120, 36), (160, 48)],
                         ids=["80x24", "120x36", "160x48"])
async def test_three_planes_are_drawn_in_proportion_with_captions_that_fit(drawn, size):
    # issue 31: each plane was stretched to its box (a circle drawn as a tall ellipse)
    app = cockpit(drawn)
    async with app.run_test(size=size) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: isinstance(app.focused, ExampleCell))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExampleDetail))
        await pilot.pause()
        text = await on_screen(pilot, app, "axial · slice 17/32", "coronal", "sagittal")
        assert "coronal · centre" in text and "sagittal · centre" in text   # not cut
        # a cell is twice as tall as wide, and half-blocks draw two pixels a cell: a
        # square millimetre is 1 column by half a row
        axial = app.screen.query_one("#plane-axial").region
        assert axial.width >= 16 and abs(axial.width - 2 * axial.height) <= 2, axial
        # coronal: 32 slices of 2.5 mm tall, 48 columns of 0.7 mm wide
        coronal = app.screen.query_one("#plane-coronal").region
        want = (48 * 0.7) / (32 * 2.5)
        assert abs(coronal.width / (2 * coronal.height) - want) < 0.12, coronal
        assert coronal.height >= axial.height - 1                     # no plane shrunk


@pytest.mark.parametrize("size, least", [((80, 24), 20), ((160, 48), 30)],
                         ids=["80x24", "160x48"])
async def test_thumbnails_grow_with_the_screen(drawn, size, least):
    app = cockpit(drawn)
    async with app.run_test(size=size) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: isinstance(app.focused, ExampleCell))
        await pilot.pause()
        images = list(app.screen.query(".example-image"))
        assert images
        first = images[0].region
        assert first.width >= least and abs(first.width - 2 * first.height) <= 1, first
        shown = len(images)
        assert shown >= (3 if size == (80, 24) else 8)       # a whole kind at 160x48
