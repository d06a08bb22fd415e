"""The cockpit's event collector: pure Python, no Textual."""

from __future__ import annotations

import math
import threading

import pytest

from luna_core.run.events import (
    FAILED,
    PAUSED,
    STARTING,
    TRAINING,
    VALIDATING,
    BatchDone,
    CheckpointSaved,
    EpochMetrics,
    LogRecord,
    NonFiniteLoss,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
)
from luna_tui.model.collector import (
    Bottleneck,
    DecimatingSeries,
    EventCollector,
    RunSnapshot,
)
from tests.cockpit_helpers import scripted_run


def run_started(epochs=2, trn_samples=3200, val_samples=640, batch_size=32, **options):
    return RunStarted(run_dir="runs/x", options={"batch_size": batch_size, **options},
                      epochs=epochs,
                      start_epoch=1, trn_samples=trn_samples, val_samples=val_samples,
                      trn_pos=10, val_pos=2, device="cuda:0", pid=1, t=0.0)


def batches(phase, epoch, n, *, sec=0.1, first_sec=None, start=0, count=None, data_frac=0.5,
            loss=0.5):
    """BatchDone events whose active_s grows by ``sec`` per batch (``first_sec`` for the
    first one, to model a slow warm-up)."""
    active = 0.0
    count = count or n
    for i in range(start, start + n):
        step = first_sec if (first_sec is not None and i == start) else sec
        active += step
        yield BatchDone(phase=phase, epoch=epoch, batch_ndx=i, batch_count=count, samples=32,
                        total_samples=32 * (i + 1), loss=loss, data_s=step * data_frac,
                        compute_s=step * (1 - data_frac), active_s=active, t=0.0)


def metrics(phase, epoch, pos_correct=0, pos=10, neg=3190, neg_correct=3190):
    all_pct = 100.0 * (neg_correct + pos_correct) / (neg + pos)
    return EpochMetrics(phase=phase, epoch=epoch, total_samples=0, metrics={
        "loss/all": 0.02, "loss/neg": 0.01, "loss/pos": 5.0, "correct/all": all_pct,
        "correct/neg": 100.0 * neg_correct / neg, "correct/pos": 100.0 * pos_correct / pos,
        "pr/precision": math.nan, "pr/recall": pos_correct / pos, "pr/f1_score": math.nan},
        neg_correct=neg_correct, neg_count=neg, pos_correct=pos_correct, pos_count=pos, t=0.0)


def test_empty_snapshot_is_safe():
    snap = EventCollector().snapshot()
    assert isinstance(snap, RunSnapshot)
    assert snap.state == STARTING
    assert snap.phase_remaining_s is None and snap.run_remaining_s is None
    assert snap.bottleneck is None and snap.samples_per_s is None


def test_progress_and_states_follow_events():
    c = EventCollector()
    c(run_started())
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    assert c.snapshot().state == TRAINING
    c.feed(batches("trn", 1, 10, count=100))
    snap = c.snapshot()
    assert (snap.epoch, snap.epochs, snap.phase) == (1, 2, "trn")
    assert (snap.batches_done, snap.batch_count) == (10, 100)
    assert snap.phase_fraction == pytest.approx(0.1)
    c(StatusChanged(state=PAUSED))
    assert c.snapshot().state == PAUSED
    c(PhaseStarted(phase="val", epoch=1, batch_count=20, sample_count=640, t=0.0))
    assert c.snapshot().state == PAUSED          # a phase change does not unpause
    c(StatusChanged(state=VALIDATING))
    assert c.snapshot().state == VALIDATING


def test_phase_eta_ignores_warmup_batches():
    c = EventCollector(warmup_batches=3)
    c(run_started(epochs=1))
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    # the first batch takes 10 s (loader start-up), the rest 0.1 s each
    c.feed(batches("trn", 1, 20, sec=0.1, first_sec=10.0, count=100))
    snap = c.snapshot()
    assert snap.phase_remaining_s == pytest.approx(80 * 0.1)
    assert snap.eta_rough                        # no validation seen yet: a guess


def test_eta_excludes_paused_time_because_it_uses_active_time():
    c = EventCollector(warmup_batches=1)
    c(run_started(epochs=1))
    c(PhaseStarted(phase="trn", epoch=1, batch_count=10, sample_count=320, t=0.0))
    c.feed(batches("trn", 1, 5, sec=1.0, count=10))
    before = c.snapshot().phase_remaining_s
    c(StatusChanged(state=PAUSED, t=1000.0))     # an hour of wall time passes paused...
    c(StatusChanged(state=TRAINING, t=4600.0))
    # ...and active_s (the trainer excludes pauses) keeps its pace
    c(BatchDone(phase="trn", epoch=1, batch_ndx=5, batch_count=10, samples=32,
                total_samples=192, loss=0.4, data_s=0.5, compute_s=0.5, active_s=6.0,
                t=4601.0))
    assert before == pytest.approx(5.0)
    assert c.snapshot().phase_remaining_s == pytest.approx(4.0)


def test_train_and_validation_have_separate_rates_and_run_eta_adds_phases():
    c = EventCollector(warmup_batches=1)
    c(run_started(epochs=3, trn_samples=3200, val_samples=640))
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 1, 100, sec=0.2))
    c(PhaseStarted(phase="val", epoch=1, batch_count=20, sample_count=640, t=0.0))
    c.feed(batches("val", 1, 10, sec=0.05, count=20))
    snap = c.snapshot()
    assert snap.phase_remaining_s == pytest.approx(10 * 0.05)
    # rest of val E1 + 2 x (100 trn batches at 0.2 s + 20 val batches at 0.05 s)
    assert snap.run_remaining_s == pytest.approx(0.5 + 2 * (20.0 + 1.0))
    assert not snap.eta_rough


def test_run_eta_counts_only_the_epochs_that_validate():
    """--val-every 3 over 7 epochs: E3, E6 and the last, E7, validate."""
    c = EventCollector(warmup_batches=1)
    c(run_started(epochs=7, trn_samples=3200, val_samples=640, val_every=3))
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 1, 100, sec=0.2))
    c(PhaseStarted(phase="val", epoch=1, batch_count=20, sample_count=640, t=0.0))
    c.feed(batches("val", 1, 20, sec=0.05))             # (a validation seen, for its rate)
    c(PhaseStarted(phase="trn", epoch=2, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 2, 50, sec=0.2, count=100))
    snap = c.snapshot()
    # rest of trn E2 (no validation after it) + E3..E7 training + 3 validations of 1 s
    assert snap.run_remaining_s == pytest.approx(50 * 0.2 + 5 * 20.0 + 3 * 1.0)


def test_run_eta_before_validation_borrows_training_rate():
    c = EventCollector(warmup_batches=1)
    c(run_started(epochs=1, trn_samples=3200, val_samples=640))
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 1, 50, sec=0.2, count=100))
    snap = c.snapshot()
    assert snap.phase_remaining_s == pytest.approx(50 * 0.2)
    assert snap.run_remaining_s == pytest.approx(50 * 0.2 + 20 * 0.2)
    assert snap.eta_rough


def test_bottleneck_share_and_verdicts():
    c = EventCollector(warmup_batches=0)
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 1, 10, sec=0.1, data_frac=0.7))
    b = c.snapshot().bottleneck
    assert b.data_share == pytest.approx(0.7)
    assert b.verdict == "loader-bound"
    assert b.data_ms == pytest.approx(70.0)
    assert c.snapshot().samples_per_s == pytest.approx(320.0)
    assert Bottleneck("trn", 10, 0.1, 0.9).verdict == "compute-bound"
    assert Bottleneck("trn", 10, 0.3, 0.7).verdict == "partly loader-bound"


def test_bottleneck_window_is_recent_and_skips_warmup():
    c = EventCollector(warmup_batches=2, rate_window=5)
    c(PhaseStarted(phase="trn", epoch=1, batch_count=100, sample_count=3200, t=0.0))
    c.feed(batches("trn", 1, 2, sec=1.0, data_frac=1.0))           # warm-up: all waiting
    assert c.snapshot().bottleneck.data_share == pytest.approx(1.0)  # better than nothing
    c.feed(batches("trn", 1, 20, start=2, sec=0.1, data_frac=0.1))
    b = c.snapshot().bottleneck
    assert b.batches == 5
    assert b.data_share == pytest.approx(0.1)


def test_batch_loss_is_bounded_and_covers_the_run():
    c = EventCollector(max_loss_points=100)
    c(PhaseStarted(phase="trn", epoch=1, batch_count=5000, sample_count=160000, t=0.0))
    c.feed(batches("trn", 1, 5000, count=5000))
    pts = c.snapshot().batch_loss
    assert 50 <= len(pts) <= 101
    assert pts[-1][0] == pytest.approx(1.0)       # x is the fractional epoch
    assert pts[0][0] < 0.05


def test_batch_loss_skips_non_finite_and_validation():
    c = EventCollector()
    c(PhaseStarted(phase="trn", epoch=1, batch_count=4, sample_count=128, t=0.0))
    for i, loss in enumerate([0.5, math.nan, math.inf, 0.4]):
        c(BatchDone(phase="trn", epoch=1, batch_ndx=i, batch_count=4, samples=32,
                    total_samples=32 * (i + 1), loss=loss, data_s=0.1, compute_s=0.1,
                    active_s=0.2 * (i + 1), t=0.0))
    c(PhaseStarted(phase="val", epoch=1, batch_count=1, sample_count=32, t=0.0))
    c(BatchDone(phase="val", epoch=1, batch_ndx=0, batch_count=1, samples=32,
                total_samples=128, loss=9.0, data_s=0.1, compute_s=0.1, active_s=0.2, t=0.0))
    assert [y for _, y in c.snapshot().batch_loss] == [0.5, 0.4]


def test_decimating_series_averages_and_halves():
    s = DecimatingSeries(max_points=4)
    for i in range(16):
        s.add(float(i), float(i))
    pts = s.points()
    assert len(pts) <= 5
    assert pts[-1][0] == 15.0
    assert sum(y for _, y in pts) / len(pts) == pytest.approx(7.5, abs=1.0)


def test_metrics_history_and_alarm():
    c = EventCollector()
    c(metrics("trn", 1))
    c(metrics("val", 1))
    c(metrics("trn", 2, pos_correct=8))
    snap = c.snapshot()
    assert snap.metrics["val"].pos_alarm            # 99.7 % all, 0 % pos
    assert not snap.metrics["trn"].pos_alarm        # 80 % of nodules right now
    assert [p.epoch for p in snap.history["trn"]] == [1, 2]
    assert snap.history["val"][0].correct_pos == 0.0
    assert snap.metrics["val"].all_count == 3200
    c(metrics("trn", 2))                            # a resumed run repeats epoch 2
    assert [p.epoch for p in c.snapshot().history["trn"]] == [1, 2]


def test_log_checkpoints_nonfinite_and_finish():
    c = EventCollector(max_log_lines=3)
    for i in range(5):
        c(LogRecord(level="info", message=f"line {i}"))
    c(LogRecord(level="ERROR", message="two\nlines"))
    snap = c.snapshot()
    assert [line.message for line in snap.log] == ["line 4", "two", "lines"]
    assert snap.log_total == 7
    assert snap.errors == ("two\nlines",)
    c(CheckpointSaved(path="a.pt", reason="request", epoch=1, batch_ndx=3, total_samples=9))
    assert c.snapshot().last_checkpoint.path == "a.pt"
    c(NonFiniteLoss(phase="trn", epoch=1, batch_ndx=4, action="pause"))
    c(StatusChanged(state=PAUSED))
    snap = c.snapshot()
    assert snap.paused_by_nonfinite and snap.nonfinite_count == 1
    c(StatusChanged(state=TRAINING))
    assert not c.snapshot().paused_by_nonfinite
    c(RunFinished(state=FAILED, exit_code=1, error="boom"))
    snap = c.snapshot()
    assert snap.ended and snap.state == FAILED and snap.finished.error == "boom"
    assert snap.phase_remaining_s == 0.0


def test_a_bad_event_never_raises_into_the_trainer():
    c = EventCollector()
    bad = EpochMetrics(phase="trn", epoch=1, total_samples=0, metrics=None,  # type: ignore
                       neg_correct=0, neg_count=0, pos_correct=0, pos_count=0)
    c(bad)
    assert "could not use" in c.snapshot().log[-1].message


def test_snapshot_is_cached_until_something_changes():
    c = EventCollector()
    a = c.snapshot()
    assert c.snapshot() is a
    c(LogRecord(level="INFO", message="x"))
    assert c.snapshot() is not a


def test_concurrent_feeding_and_snapshots():
    c = EventCollector()
    c(PhaseStarted(phase="trn", epoch=1, batch_count=20000, sample_count=640000, t=0.0))
    done = threading.Event()

    def produce():
        c.feed(batches("trn", 1, 20000, count=20000))
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    seen = 0
    while not done.is_set():
        snap = c.snapshot()
        assert snap.batches_done >= seen
        seen = snap.batches_done
    t.join()
    assert c.snapshot().batches_done == 20000


def test_scripted_fake_run_has_the_books_numbers():
    c = scripted_run(lambda e: isinstance(e, EpochMetrics) and e.phase == "val")
    snap = c.snapshot()
    trn, val = snap.metrics["trn"], snap.metrics["val"]
    assert trn.get("correct/all") == pytest.approx(99.7, abs=0.05)
    assert trn.get("correct/pos") == 0.0
    assert trn.pos_alarm and val.pos_alarm
