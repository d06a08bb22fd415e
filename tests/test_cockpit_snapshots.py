"""Snapshot tests of the cockpit (pytest-textual-snapshot), clock and system readings frozen.

Regenerate after a deliberate change with ``pytest tests/test_cockpit_snapshots.py
--snapshot-update`` and look at the SVGs in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest

from luna_core.run.command_table import CommandChannel
from luna_core.run.events import (
    FAILED,
    PAUSED,
    BatchDone,
    LogRecord,
    RunFinished,
    StatusChanged,
)
from luna_tui.app import CockpitApp
from luna_tui.link.local import LocalLink
from tests.cockpit_helpers import (
    FROZEN_READING,
    NO_GPU_READING,
    fake_time,
    frozen_clock,
    scripted_run,
)


def cockpit(collector, reading=FROZEN_READING) -> CockpitApp:
    return CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                      system_probe=lambda: reading)


def mid_epoch_two():
    return scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 2
                        and e.phase == "trn" and e.batch_ndx == 80,
                        epochs=3, trn_batches=200, val_batches=40)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_training_with_nodules_missed(snap_compare, size):
    """Mid epoch 2: the book's 99.7 % correct and 0 % of nodules, flagged."""
    assert snap_compare(cockpit(mid_epoch_two()), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (100, 32), (160, 48)],
                         ids=["80x24", "100x32", "160x48"])
def test_trends_view(snap_compare, size):
    """`2`: the three trend plots on the whole screen, at least 10 plot rows each."""
    assert snap_compare(cockpit(mid_epoch_three()), terminal_size=size, press=["2"])


@pytest.mark.parametrize("size, press", [((80, 24), ["5"]), ((80, 24), ["5", "n", "n"]),
                                         ((160, 48), ["5"])],
                         ids=["80x24-froc", "80x24-histograms", "160x48"])
def test_diagnostics_view(snap_compare, size, press):
    """`5`: the latest validation's FROC, PR curve, histograms and confusion beside the one
    before; one plot at a time at 80x24 (`n` cycles), all four at 160x48."""
    assert snap_compare(cockpit(mid_epoch_three()), terminal_size=size, press=press)


def mid_epoch_three():
    return scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 3
                        and e.phase == "trn" and e.batch_ndx == 120,
                        epochs=4, trn_batches=200, val_batches=40)


def test_paused_on_non_finite_loss(snap_compare):
    collector = scripted_run(lambda e: isinstance(e, StatusChanged) and e.state == PAUSED,
                             epochs=3, trn_batches=200, val_batches=40, nonfinite_at=(2, 30))
    assert snap_compare(cockpit(collector), terminal_size=(80, 24))


def test_failed_run(snap_compare):
    collector = scripted_run(lambda e: isinstance(e, BatchDone) and e.epoch == 1
                             and e.batch_ndx == 120, epochs=2, trn_batches=200,
                             val_batches=40)
    t = fake_time(start=1_741_089_700.0)
    collector(LogRecord(level="ERROR", message="Traceback (most recent call last):\n"
                        '  File "luna_core/training.py", line 212, in doTraining\n'
                        "RuntimeError: CUDA out of memory", t=t()))
    collector(RunFinished(state=FAILED, exit_code=1, t=t(),
                          error="RuntimeError: CUDA out of memory at "
                                "luna_core/training.py:212 in doTraining"))
    assert snap_compare(cockpit(collector), terminal_size=(160, 48))


def test_finished_run_without_gpu(snap_compare):
    collector = scripted_run(lambda e: isinstance(e, RunFinished), epochs=4,
                             trn_batches=150, val_batches=30)
    assert snap_compare(cockpit(collector, NO_GPU_READING), terminal_size=(160, 48))


def test_quit_confirmation(snap_compare):
    assert snap_compare(cockpit(mid_epoch_two()), terminal_size=(80, 24), press=["q"])


def test_help_screen(snap_compare):
    assert snap_compare(cockpit(mid_epoch_two()), terminal_size=(80, 24),
                        press=["question_mark"])


def test_no_color(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(cockpit(mid_epoch_two()), terminal_size=(80, 24))
