"""One reading of the event stream (issue 29): luna_core.run.fold's ``RunState`` holds what the
readers share, folded once; the collector, the summary, `runs` and ctl read it. The expected
values below are what the readers gave before they shared the fold (each had its own chain),
on the same recorded sequence: a run paused, steered, checkpointed, crashed, and resumed from
another folder, repeating an epoch. A new kind of event reaches its own handler and nothing
else."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

from luna_core.run import events as ev
from luna_core.run.alerts import NotifySink
from luna_core.run.fold import RunState, fold
from luna_core.run.runs import RUNNING, summarize
from luna_core.run.send_command import _where
from luna_core.run.sinks import ConsoleSink, JsonlSink
from luna_core.run.summary import summarise
from luna_core.train.tensorboard import TensorBoardSink
from luna_tui.model.collector import EventCollector

FIRST, SECOND = "/old/runs/a", "/new/runs/a"


def _started(run_dir, t, start_epoch=1):
    return ev.RunStarted(run_dir=run_dir, options={"lr": 0.001, "momentum": 0.99}, epochs=3,
                         start_epoch=start_epoch, trn_samples=64, val_samples=16, trn_pos=2,
                         val_pos=1, device="cpu", pid=2**22 + 7, host="elsewhere",
                         control_socket=f"{run_dir}/control.sock", t=t)


def _batch(phase, epoch, ndx, t, total, count=4):
    return ev.BatchDone(phase=phase, epoch=epoch, batch_ndx=ndx, batch_count=count, samples=16,
                        total_samples=total, loss=0.5, data_s=0.5, compute_s=0.5,
                        active_s=1.0 * (ndx + 1), t=t)


def _val(epoch, loss, pos, t):
    return ev.EpochMetrics(phase="val", epoch=epoch, total_samples=64 * epoch, t=t,
                           metrics={"loss/all": loss, "correct/pos": pos, "correct/all": 99.0,
                                    "pr/recall": pos / 100, "pr/precision": 0.5,
                                    "pr/f1_score": 0.2},
                           neg_correct=15, neg_count=15, pos_correct=0, pos_count=1)


def _checkpoint(run_dir, epoch, reason, t):
    return ev.CheckpointSaved(path=f"{run_dir}/checkpoints/e{epoch}-{reason}.pt", reason=reason,
                              epoch=epoch, batch_ndx=4, total_samples=64 * epoch, t=t)


def recorded() -> list[ev.Event]:
    """A run of 3 epochs: E1 whole, E2 crashed after its validation; resumed from E1's
    checkpoint in a moved folder, it repeats E2 and stops in E3's training."""
    return [
        _started(FIRST, 100.0),
        ev.StatusChanged(state=ev.TRAINING, t=101.0),
        ev.PhaseStarted(phase="trn", epoch=1, batch_count=4, sample_count=64, t=101.0),
        _batch("trn", 1, 0, 102.0, 16),
        ev.StatusChanged(state=ev.PAUSED, t=103.0),
        ev.StatusChanged(state=ev.TRAINING, detail="resumed", t=113.0),
        ev.OptimizerChanged(lr=0.01, momentum=0.9, old_lr=0.001, old_momentum=0.99, epoch=1,
                            batch_ndx=1, total_samples=16, source="ctl", t=113.5),
        _batch("trn", 1, 3, 116.0, 64),
        ev.PhaseStarted(phase="val", epoch=1, batch_count=1, sample_count=16, t=116.0),
        _batch("val", 1, 0, 117.0, 64, count=1),
        _val(1, 0.40, 0.0, 117.5),
        _checkpoint(FIRST, 1, "epoch", 118.0),
        ev.PhaseStarted(phase="trn", epoch=2, batch_count=4, sample_count=64, t=118.0),
        ev.NonFiniteLoss(phase="trn", epoch=2, batch_ndx=1, action="skip", t=119.0),
        ev.LogRecord(level="ERROR", message="side output failed: TensorBoardSink", t=119.5),
        _batch("trn", 2, 3, 121.0, 128),
        ev.PhaseStarted(phase="val", epoch=2, batch_count=1, sample_count=16, t=121.0),
        _val(2, 0.30, 10.0, 122.0),                 # then the process died: no final event
        _started(SECOND, 200.0, start_epoch=2),
        ev.PhaseStarted(phase="trn", epoch=2, batch_count=4, sample_count=64, t=201.0),
        _batch("trn", 2, 3, 205.0, 128),
        ev.PhaseStarted(phase="val", epoch=2, batch_count=1, sample_count=16, t=205.0),
        _val(2, 0.35, 0.0, 206.0),                  # the repeated epoch: the newest wins
        _checkpoint(SECOND, 2, "epoch", 207.0),
        ev.PhaseStarted(phase="trn", epoch=3, batch_count=4, sample_count=64, t=207.0),
        _batch("trn", 3, 1, 209.0, 160),
        ev.StatusChanged(state=ev.STOPPING, t=209.5),
        _checkpoint(SECOND, 3, "stop", 210.0),
        ev.StatusChanged(state=ev.STOPPED, t=210.5),
        ev.RunFinished(state=ev.STOPPED, exit_code=0,
                       last_checkpoint=f"{SECOND}/checkpoints/e3-stop.pt", t=211.0),
    ]


def test_the_state_holds_what_the_readers_share():
    run = RunState.of(recorded())
    assert (run.started.run_dir, run.current.run_dir) == (FIRST, SECOND)
    assert (run.state, run.detail, run.status) == (ev.STOPPED, "", ev.STOPPED)
    assert run.finished.state == ev.STOPPED and run.ended
    assert (run.epoch, run.phase, run.batches_done, run.batch_count) == (3, "trn", 2, 4)
    assert (run.phase_sample_count, run.total_samples, run.reached) == (64, 160, 3)
    assert run.last_batch.epoch == 3 and run.epochs_done == 2
    assert (run.lr, run.momentum) == (0.001, 0.99)          # the new process's options
    assert sorted(run.validations) == [1, 2]
    assert run.validations[2].metrics["loss/all"] == 0.35
    assert run.last_validation is run.validations[2]
    assert run.checkpoint_total == 3 and run.checkpoint_run_dir == SECOND
    assert run.checkpoints[-1].path == f"{SECOND}/checkpoints/e3-stop.pt"
    assert (run.nonfinite_count, run.last_nonfinite.action) == (1, "skip")
    assert not run.paused_by_nonfinite
    assert list(run.errors) == ["side output failed: TensorBoardSink"]


def test_mid_run_the_state_says_what_the_readers_said():
    events = recorded()
    run = RunState.of(events[:6])                         # paused, then resumed
    assert (run.state, run.detail, run.status) == (ev.TRAINING, "resumed", ev.TRAINING)
    run = RunState.of(events[:18])                        # the first process, dead
    assert run.finished is None and run.state == ev.VALIDATING
    assert (run.reached, run.lr, run.momentum) == (2, 0.01, 0.9)
    assert _where(run) == "after E2 trn batch 4/4"


def test_runs_reads_the_state_as_it_did(tmp_path):
    info = summarize(str(tmp_path), recorded())
    assert (info.state, info.started, info.epoch, info.epochs) == (ev.STOPPED, 100.0, 3, 3)
    assert (info.val_loss, info.val_correct_pos) == (0.35, 0.0)
    assert info.control_socket == f"{SECOND}/control.sock" and info.error is None
    assert info.last_checkpoint == str(tmp_path / "checkpoints" / "e3-stop.pt")
    dead = summarize(str(tmp_path), recorded()[:18])   # no final event, on another host:
    assert (dead.state, dead.epoch, dead.val_loss) == (RUNNING, 2, 0.30)   # trusted as running
    assert dead.last_checkpoint == str(tmp_path / "checkpoints" / "e1-epoch.pt")


def test_the_summary_reads_the_state_as_it_did(tmp_path):
    lines = summarise(str(tmp_path), recorded()).lines()
    assert lines == [
        "run stopped after 11s: training 14s, validation 1s, waiting for data 8s, "
        "paused 10s (2 of 3 epochs)",
        "  best epoch: validation loss 0.3500 at E2; F1 0.200 at E1",
        "  last validation (E2): recall 0.000 (best 0.000 at E1), precision 0.500 (best 0.500 "
        "at E1), F1 0.200 (best 0.200 at E1)",
        f"  go on with: luna-tui --headless --resume {tmp_path}",
    ]


def test_the_cockpit_reads_the_state_as_it_did():
    collector = EventCollector()
    collector.feed(recorded())
    snap = collector.snapshot()
    assert (snap.state, snap.run_dir, snap.epochs, snap.start_epoch) == (
        ev.STOPPED, SECOND, 3, 2)
    assert (snap.epoch, snap.phase, snap.batches_done, snap.total_samples) == (3, "trn", 2, 160)
    assert (snap.lr, snap.momentum, snap.nonfinite_count, snap.checkpoint_total) == (
        0.001, 0.99, 1, 3)
    assert snap.errors == ("side output failed: TensorBoardSink",)
    assert [p.epoch for p in snap.history["val"]] == [1, 2]
    assert snap.history["val"][-1].loss_all == 0.35
    # the summary of the run's first folder (where it began), from the state the cockpit folds
    assert snap.summary == tuple(summarise(FIRST, recorded()).lines())
    assert snap.summary[-1] == f"  go on with: luna-tui --headless --resume {FIRST}"


@dataclass
class Ping(ev.Event):
    """A kind of event no reader knows yet."""
    kind: ClassVar[str] = "ping_test"
    note: str = ""


def test_a_new_event_kind_reaches_only_its_handler(tmp_path):
    heard: list[tuple[str, str]] = []

    @fold.register
    def _ping(event: Ping, state: RunState) -> None:
        heard.append((event.note, state.state))

    run = RunState.of(recorded()[:3])
    before = RunState.of(recorded()[:3])
    run(Ping(note="hello"))
    assert heard == [("hello", ev.TRAINING)]
    assert run == before                                  # nothing else changed
    run(recorded()[3])
    assert len(heard) == 1                                # other kinds never reach it

    # the readers that do not care go on as if it never came
    collector = EventCollector()
    collector.feed(recorded()[:3])
    snap = collector.snapshot()
    collector(Ping(note="again"))
    assert collector.snapshot() == snap.__class__(**{**vars(snap), "version": snap.version + 1})
    stream = io.StringIO()
    ConsoleSink(stream)(Ping())
    notify = NotifySink("exit 1")
    notify(Ping())
    board = TensorBoardSink(str(tmp_path), "tb", "now", "test")
    board(Ping())
    assert stream.getvalue() == "" and notify._threads == [] and board._writers == {}
    summary = summarise(FIRST, recorded())
    summary.fold(Ping())
    assert summary.lines() == summarise(FIRST, recorded()).lines()
    # the event file keeps every event (read back, a kind this version does not know is
    # skipped by the index and refused by the event file's reader, as before)
    sink = JsonlSink(str(tmp_path / "events.jsonl"))
    sink(Ping(note="kept", t=1.0))
    sink.close()
    assert '"kind": "ping_test"' in (tmp_path / "events.jsonl").read_text()
