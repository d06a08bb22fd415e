"""The cockpit on a --task malignancy run: its classes by name (benign, malignant), its AUC
beside the diameter alone, and no NODULES MISSED (the classifier's alarm). Scripted run."""

from __future__ import annotations

from luna_core.run import events as ev
from tests.cockpit_helpers import on_screen, screen_text, scripted_run
from tests.test_seg_cockpit import cockpit


async def test_the_class_table_names_malignancys_classes_and_its_baseline():
    collector = scripted_run(lambda e: isinstance(e, ev.BatchDone) and e.epoch == 3
                             and e.phase == "trn" and e.batch_ndx == 40,
                             epochs=4, trn_batches=100, val_batches=20, task="malignancy")
    app = cockpit(collector)
    async with app.run_test(size=(120, 36)) as pilot:
        await on_screen(pilot, app, " other ", "benign", "malignant",
                        "val E2  AUC 0.80 [", "diameter alone -")
        assert "NODULES MISSED" not in screen_text(app)     # 0 malignant right: no alarm
        await pilot.press("question_mark")
        await on_screen(pilot, app, "This run trains --task malignancy", "the baseline to beat")
