"""The cockpit and `luna-tui examples` on a --task seg run: the pixel table, the trend of
nodule pixels found, the seg examples (three colours in half-blocks), attach of a finished
seg run. Machine-independent: the run is scripted and the examples are drawn by the test."""

from __future__ import annotations

import pytest

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.run.example_file import read_examples
from luna_tui.app import CockpitApp
from luna_tui.images import image_widget
from luna_tui.link.local import LocalLink
from tests.cockpit_helpers import (
    FROZEN_READING,
    frozen_clock,
    on_screen,
    scripted_run,
    write_fake_seg_examples,
)


def seg_run(tmp_path, epochs=(1, 2)):
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.epoch == 3
                             and e.phase == "trn" and e.batch_ndx == 40,
                             epochs=4, trn_batches=100, val_batches=20, task="seg")
    for epoch in epochs:
        path = write_fake_seg_examples(str(tmp_path / f"E{epoch:03d}.zip"), epoch)
        collector(ev.ExamplesSaved(epoch=epoch, path=path, counts={"missed_pixels": 4,
                                                                    "false_pixels": 4}, t=1.0))
    return collector


def cockpit(collector) -> CockpitApp:
    return CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                      system_probe=lambda: FROZEN_READING, image_class=image_widget("halfblock"))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    return seg_run(tmp_path_factory.mktemp("seg"))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_seg_main_view(snap_compare, drawn, size):
    """The pixel table in place of the class table, the trend of nodule pixels found."""
    assert snap_compare(cockpit(drawn), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_seg_examples_view(snap_compare, drawn, size):
    assert snap_compare(cockpit(drawn), terminal_size=size, press=["6"])


async def test_the_pixel_table_and_the_seg_examples_say_what_they_show(drawn):
    app = cockpit(drawn)
    async with app.run_test(size=(160, 48)) as pilot:
        await on_screen(pilot, app, "Pixels · latest epoch", "FP %", "Dice",
                        "val E2", "nodule pixels found; best.pt by recall", "2000 %")
        await pilot.press("6")
        await on_screen(pilot, app, "val E2 most nodule pixels missed: 4", "#1 missed",
                        "k kind")
        await pilot.press("k")
        await on_screen(pilot, app, "val E2 most pixels falsely marked: 4")
        await pilot.press("enter")
        await on_screen(pilot, app, "close-up · 64 px round it", "whole slice 31",
                        "nodule pixels found")
        await pilot.press("escape")
        await pilot.press("5")
        await on_screen(pilot, app, "a --task seg run has no candidate ranking to score")
        await pilot.press("7")
        await on_screen(pilot, app, "val nodule pixels found", "best: val loss E2")
        await pilot.press("question_mark")
        await on_screen(pilot, app, "This run trains --task seg", "best.pt by recall")


def test_seg_example_images_colour_found_missed_and_false_pixels(tmp_path):
    from luna_tui.model.ct_image import FALSE, FOUND, MISSED, any_image, views_of

    path = write_fake_seg_examples(str(tmp_path / "E001.zip"), 1, k=1)
    examples = read_examples(path)
    assert examples.task == "seg" and views_of(examples) == ("close-up", "slice")
    ex = examples.of_kind("missed_pixels")[0]
    whole = any_image(examples, ex, "slice", mm_per_px=0.7)
    assert whole.size == (96, 96)
    assert whole.getpixel((44, 48)) == FOUND          # the disc's left half: called
    assert whole.getpixel((52, 48)) == MISSED         # its right half: missed
    assert whole.getpixel((64, 30)) == FALSE          # the square beside it
    grey = whole.getpixel((10, 10))
    assert grey[0] == grey[1] == grey[2]              # lung, uncoloured
    close = any_image(examples, ex, "close-up", mm_per_px=0.7)
    assert close.size == (64, 64)
    _i, r, c = ex.irc_in_chunk
    assert close.getpixel((c - (c - 32) + 3, 32)) == MISSED   # the close-up centres it
