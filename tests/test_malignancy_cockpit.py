"""The cockpit on a --task malignancy run: its classes by name (benign, malignant), its AUC
beside the diameter alone and whether it beats it, no NODULES MISSED (the classifier's alarm),
and its examples (the worst-graded nodules). Scripted run, drawn examples; snapshots at 80x24
and 160x48."""

from __future__ import annotations

import pytest

from luna_core.run import events as ev
from luna_core.run.metric_catalog import AUC_VS_DIAMETER_HIGH, AUC_VS_DIAMETER_LOW
from tests.cockpit_helpers import on_screen, screen_text, scripted_run, write_fake_examples
from tests.test_seg_cockpit import cockpit


def malignancy_run(tmp_path):
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.epoch == 3
                             and e.phase == "trn" and e.batch_ndx == 40,
                             epochs=4, trn_batches=100, val_batches=20, task="malignancy")
    path = write_fake_examples(str(tmp_path / "E002.zip"), 2, k=4, task="malignancy")
    collector(ev.ExamplesSaved(epoch=2, path=path, counts={
        "missed_malignant": 4, "false_malignant": 4, "best_malignant": 4}, t=1.0))
    return collector


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    return malignancy_run(tmp_path_factory.mktemp("mal"))


async def test_the_class_table_names_malignancys_classes_and_its_baseline(drawn):
    app = cockpit(drawn)
    async with app.run_test(size=(120, 36)) as pilot:
        await on_screen(pilot, app, " other ", "benign", "malignant", "val E2  AUC 0.80 · ",
                        "diameter alone 0.74: not told apart")
        text = screen_text(app)
        assert "NODULES MISSED" not in text                # 0 malignant right: no alarm
        # the malignant row has its precision, recall and F1 (the renamed positive class)
        assert any(" malignant " in line and "0.000" in line for line in text.splitlines())
        await pilot.press("6")
        await on_screen(pilot, app, "malignant nodules graded benign (0.5 or less): 4")
        await pilot.press("k")
        await on_screen(pilot, app, "benign nodules graded malignant (above 0.5): 4")
        await pilot.press("enter")
        await on_screen(pilot, app, "· benign · diameter")
        await pilot.press("escape")
        await pilot.press("question_mark")
        await on_screen(pilot, app, "This run trains --task malignancy", "the baseline to beat")


def test_the_console_line_says_whether_the_model_beats_the_diameter():
    from luna_core.run.metric_catalog import AUC, AUC_DIAMETER
    from luna_core.run.verdict import malignancy_line

    line = malignancy_line({AUC.key: 0.93, AUC_DIAMETER.key: 0.90,
                            AUC_VS_DIAMETER_LOW.key: -0.02, AUC_VS_DIAMETER_HIGH.key: 0.08})
    assert line == ("AUC 0.93 · diameter alone 0.90: not told apart (-0.02 to +0.08)")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_malignancy_main_view(snap_compare, drawn, size):
    assert snap_compare(cockpit(drawn), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_malignancy_examples_view(snap_compare, drawn, size):
    assert snap_compare(cockpit(drawn), terminal_size=size, press=["6"])
