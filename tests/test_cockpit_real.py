"""The cockpit over the real training loop on the tiny synthetic set (CPU): a full epoch
reaches the per-class table, `c` writes a loadable checkpoint, quitting mid-epoch exits with a
checkpoint, and pausing really stops the loop.

Machine-independent by construction: counts, states and checkpoints, never a loss value; the
run is paced by the test (pause) and waited on through its snapshot."""

from __future__ import annotations

import math
import os

from luna_core.run.events import FINISHED, STOPPED
from luna_core.train.checkpoint import load_checkpoint
from luna_tui.launch import build_cockpit
from tests.cockpit_helpers import FROZEN_READING, frozen_clock, on_screen, position, wait_for
from tests.test_cockpit_app import exited


def cockpit(argv):
    return build_cockpit(argv, clock=frozen_clock(), system_probe=lambda: FROZEN_READING,
                         poll_interval=0.05)


async def test_full_epoch_reaches_the_class_table(train_argv):
    app = cockpit(train_argv("--epochs", "1"))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.source.snapshot().state == FINISHED, timeout=120)
        text = await on_screen(pilot, app, "FINISHED", "of 43", "of 5", "of 1")
        assert "trn E1" in text and "val E1" in text
        snap = app.source.snapshot()
        assert snap.last_checkpoint.path.endswith("e001-end.pt")
        await pilot.press("q")
        await exited(pilot, app, timeout=60)
    assert app.return_code == 0


async def test_c_writes_a_loadable_checkpoint_and_quit_mid_epoch_checkpoints(train_argv):
    app = cockpit(train_argv("--epochs", "20"))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.source.snapshot().batches_done >= 2, timeout=120)
        await pilot.press("c")
        await wait_for(pilot, lambda: any(c.reason == "request"
                                          for c in app.source.snapshot().checkpoints),
                       timeout=60)
        requested = next(c for c in app.source.snapshot().checkpoints if c.reason == "request")
        state = load_checkpoint(requested.path)
        assert state["epoch"] == 1 and state["batch_ndx"] >= 2
        await on_screen(pilot, app, os.path.basename(requested.path))

        await pilot.press("p")
        await on_screen(pilot, app, "PAUSED", "p Resume", timeout=60)
        paused_at = position(app.source.snapshot())
        # the loop really waits: a checkpoint taken now is at the pause position
        saved = app.source.snapshot().checkpoint_total
        await pilot.press("c")
        await wait_for(pilot, lambda: app.source.snapshot().checkpoint_total == saved + 1,
                       timeout=60)
        during = app.source.snapshot().last_checkpoint
        assert during.reason == "request"
        # a checkpoint records the training position: in validation, the epoch's last batch
        trn_batches = math.ceil(app.source.snapshot().trn_samples / 8)
        assert (during.epoch, during.batch_ndx) == (
            paused_at[0], paused_at[2] if paused_at[1] == 0 else trn_batches)
        assert position(app.source.snapshot()) == paused_at
        # (batches_done restarts each phase: a pause at an epoch's last training batch
        # resumes into validation, so progress is compared as a position)
        await pilot.press("p")
        await wait_for(pilot, lambda: position(app.source.snapshot()) > paused_at,
                       timeout=60)

        await pilot.press("q")
        await pilot.press("y")
        await exited(pilot, app, timeout=60)
    snap = app.source.snapshot()
    assert snap.state == STOPPED and app.return_code == 0
    assert snap.last_checkpoint.reason == "stop"
    stopped = load_checkpoint(snap.last_checkpoint.path)
    assert stopped["total_samples"] > state["total_samples"]
    assert not app.trainer_running
