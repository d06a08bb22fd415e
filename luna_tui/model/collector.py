"""Fold the training loop's events into a snapshot the cockpit can poll.

``EventCollector`` is an event sink: the trainer thread calls it synchronously for every
event, so a call does O(1) amortised work under a lock and never touches the UI. The UI asks
for ``collector.snapshot()`` a few times a second and gets an immutable ``RunSnapshot``
(luna_tui.model.snapshot). Rates and ETAs follow luna_core.run.estimate's rule (``RunEstimate``).

Nothing here imports Textual: the same collector is fed by the in-process trainer and by a
run's JSONL event file (``luna-tui attach``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from luna_core.run.estimate import LIVE_WARMUP_BATCHES, RunEstimate
from luna_core.run.events import (
    BatchDone,
    EpochMetrics,
    Event,
    ExamplesSaved,
    LogRecord,
    PhaseStarted,
    RankTimings,
    RunStarted,
)
from luna_core.run.fold import ENDED_STATES, RunState, event_method
from luna_core.run.metric_catalog import CORRECT, CORRECT_POS, CPM, LOSS, LOSS_POS, RECALL
from luna_core.run.straggler import window_of
from luna_core.run.summary import RunSummary
from luna_tui.model.snapshot import (
    Bottleneck,
    EpochPoint,
    LogLine,
    PhaseMetrics,
    RunSnapshot,
    SnapshotSource,
)

__all__ = ["Bottleneck", "DecimatingSeries", "EpochPoint", "EventCollector", "LogLine",
           "PhaseMetrics", "RunSnapshot", "SnapshotSource"]

#: Batches at the start of every phase left out of rates and ETAs (loader start-up,
#: cudnn autotuning, first-touch allocations make them unrepresentative).
WARMUP_BATCHES = LIVE_WARMUP_BATCHES
#: Recent batches of the current phase used for samples/s and the data-wait share.
RATE_WINDOW = 50
#: Most points kept for the live per-batch training-loss line.
MAX_LOSS_POINTS = 2000
MAX_LOG_LINES = 2000
#: Windows of rank timings kept per rank for the ranks view's trend.
RANK_HISTORY_POINTS = 600



# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

class DecimatingSeries:
    """An x/y series that keeps at most ``max_points`` points.

    Incoming points are averaged in groups of ``stride``; whenever the series grows past
    ``max_points`` neighbouring pairs are merged and the stride doubles, so the line always
    covers the whole run at a resolution that keeps a redraw cheap.
    """

    def __init__(self, max_points: int = MAX_LOSS_POINTS) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.max_points = max_points
        self.stride = 1
        self._points: list[tuple[float, float]] = []
        self._acc_sum = 0.0
        self._acc_n = 0
        self._acc_x = 0.0

    def add(self, x: float, y: float) -> None:
        self._acc_sum += y
        self._acc_n += 1
        self._acc_x = x
        if self._acc_n >= self.stride:
            self._points.append((x, self._acc_sum / self._acc_n))
            self._acc_sum, self._acc_n = 0.0, 0
            if len(self._points) > self.max_points:
                self._halve()

    def _halve(self) -> None:
        pts = self._points
        merged = [((pts[i + 1][0]), (pts[i][1] + pts[i + 1][1]) / 2.0)
                  for i in range(0, len(pts) - 1, 2)]
        if len(pts) % 2:
            merged.append(pts[-1])
        self._points = merged
        self.stride *= 2

    def points(self) -> tuple[tuple[float, float], ...]:
        if self._acc_n:
            return (*self._points, (self._acc_x, self._acc_sum / self._acc_n))
        return tuple(self._points)

    def __len__(self) -> int:
        return len(self._points) + (1 if self._acc_n else 0)


@dataclass
class _PhaseClock:
    """Where this process is in the phase in progress."""

    phase: str
    epoch: int
    start_batch: int
    batch_count: int
    done_here: int = 0                 # batches finished by this process in this phase


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _opt_float(metrics: Mapping[str, float], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# The collector
# --------------------------------------------------------------------------------------------

class EventCollector:
    """A thread-safe event sink that keeps the state the cockpit needs: the run's state
    (luna_core.run.fold's ``RunState``, shared with the run's summary) and the cockpit's own
    part of the events (rates and ETAs, the metrics' history, the loss line, the log)."""

    def __init__(self, *, max_loss_points: int = MAX_LOSS_POINTS,
                 max_log_lines: int = MAX_LOG_LINES, rate_window: int = RATE_WINDOW,
                 warmup_batches: int = WARMUP_BATCHES) -> None:
        self._lock = threading.Lock()
        self._estimate = RunEstimate(warmup_batches)
        self._version = 0
        self._cached: RunSnapshot | None = None
        self._run = RunState()
        self._clock: _PhaseClock | None = None
        self._window: deque[tuple[int, float, float]] = deque(maxlen=max(1, rate_window))
        self._window_is_warmup = True
        self._metrics: dict[str, PhaseMetrics] = {}
        self._history: dict[str, list[EpochPoint]] = {"trn": [], "val": []}
        self._metrics_version = 0
        self._scores: list[tuple[int, Mapping]] = []
        self._examples: dict[int, str] = {}
        self._loss = DecimatingSeries(max_loss_points)
        self._loss_version = 0
        self._log: deque[LogLine] = deque(maxlen=max(1, max_log_lines))
        self._log_total = 0
        self._summary = RunSummary(run=self._run)    # the run's summary, folded as it goes
        self._summary_lines: tuple[str, ...] = ()     # said once the run has ended
        self._ranks: tuple[Mapping, ...] = ()
        self._straggler: Mapping | None = None
        self._rank_history: dict[int, deque] = {}
        self._ranks_version = 0

    # -- sink ------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            try:
                self._take(event)            # a bad event stops here, before the rest
                self._run(event)
                self._summary.take(event)
                if event is self._run.finished:           # this process of the run ended
                    self._summary_lines = tuple(self._summary.lines())
            except Exception as exc:  # noqa: BLE001 - never break the trainer's event bus
                self._add_log(getattr(event, "t", 0.0), "ERROR",
                              f"cockpit could not use a {type(event).__name__} event: {exc!r}")
            self._version += 1

    def feed(self, events) -> None:
        """Fold several events (a replayed file, a test script)."""
        for event in events:
            self(event)

    # -- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> RunSnapshot:
        with self._lock:
            if self._cached is not None and self._cached.version == self._version:
                return self._cached
            snap = self._build_snapshot()
            self._cached = snap
            return snap

    def _build_snapshot(self) -> RunSnapshot:
        state = self._run
        run = state.current
        if state.state in ENDED_STATES:
            phase_rem, run_rem, rough = 0.0, 0.0, False
        else:
            phase_rem, run_rem, rough = self._estimate.remaining(
                state.phase, state.epoch, state.batches_done, state.batch_count)
        window = self._window
        samples = sum(w[0] for w in window)
        secs = sum(w[1] + w[2] for w in window)
        bottleneck = None
        if window and state.phase is not None:
            bottleneck = Bottleneck(phase=state.phase, batches=len(window),
                                    data_s=sum(w[1] for w in window),
                                    compute_s=sum(w[2] for w in window))
        return RunSnapshot(
            version=self._version,
            state=state.state,
            state_detail=state.detail,
            run_dir=run.run_dir if run else "",
            device=run.device if run else "",
            task=(run.options.get("task") or "nodule") if run else "nodule",
            lr=state.lr, momentum=state.momentum,
            pid=run.pid if run else None,
            resumed_from=run.resumed_from if run else None,
            epochs=run.epochs if run else None,
            start_epoch=run.start_epoch if run else None,
            trn_samples=run.trn_samples if run else None,
            val_samples=run.val_samples if run else None,
            trn_pos=run.trn_pos if run else None,
            val_pos=run.val_pos if run else None,
            epoch=state.epoch,
            phase=state.phase,
            batches_done=state.batches_done,
            batch_count=state.batch_count,
            phase_sample_count=state.phase_sample_count,
            total_samples=state.total_samples,
            samples_per_s=(samples / secs) if secs > 0 else None,
            phase_remaining_s=phase_rem,
            run_remaining_s=run_rem,
            eta_rough=rough,
            metrics=MappingProxyType(dict(self._metrics)),
            history=MappingProxyType({k: tuple(v) for k, v in self._history.items()}),
            metrics_version=self._metrics_version,
            scores=tuple(self._scores),
            examples=tuple(sorted(self._examples.items())),
            batch_loss=self._loss.points(),
            batch_loss_version=self._loss_version,
            nonfinite_count=state.nonfinite_count,
            last_nonfinite=state.last_nonfinite,
            paused_by_nonfinite=state.paused_by_nonfinite,
            bottleneck=bottleneck,
            log=tuple(self._log),
            log_total=self._log_total,
            checkpoints=tuple(state.checkpoints),
            checkpoint_total=state.checkpoint_total,
            errors=tuple(state.errors),
            finished=state.finished,
            summary=self._summary_lines,
            ranks=self._ranks,
            straggler=self._straggler,
            rank_history=MappingProxyType({r: tuple(h) for r, h in self._rank_history.items()}),
            ranks_version=self._ranks_version,
        )

    # -- the cockpit's own part of the events (the run's state folds the rest) -------------

    @event_method
    def _take(self, event: Event) -> None:
        """Nothing of most events: the run's state has them."""

    @_take.register
    def _on_started(self, ev: RunStarted) -> None:
        self._estimate.run = ev
        self._summary_lines = ()

    @_take.register
    def _on_phase(self, ev: PhaseStarted) -> None:
        self._estimate.start_phase(ev.phase, ev.batch_count, ev.sample_count)
        self._clock = _PhaseClock(ev.phase, ev.epoch, ev.start_batch, ev.batch_count)
        self._window.clear()
        self._window_is_warmup = True

    @_take.register
    def _on_batch(self, ev: BatchDone) -> None:
        clock = self._clock
        if clock is None or clock.phase != ev.phase or clock.epoch != ev.epoch:
            # No PhaseStarted seen (e.g. a file opened mid-phase): start from this batch.
            clock = _PhaseClock(ev.phase, ev.epoch, ev.batch_ndx, ev.batch_count)
            self._clock = clock
            self._estimate.start_phase(ev.phase, ev.batch_count)
            self._window.clear()
            self._window_is_warmup = True
        clock.batch_count = ev.batch_count
        # batches done by this process in this phase, from the index rather than by counting
        # events: the event file keeps only a few batch events a second
        clock.done_here = max(clock.done_here + 1, ev.batch_ndx + 1 - clock.start_batch)

        # rates: after warm-up, the slope of active time over batches
        self._estimate.batch_done(clock.done_here, ev.active_s)

        # recent window: data wait vs compute, samples/s (warm-up batches only until better)
        if self._estimate.past_warmup(clock.done_here) and self._window_is_warmup:
            self._window.clear()
            self._window_is_warmup = False
        self._window.append((ev.samples, max(0.0, ev.data_s), max(0.0, ev.compute_s)))

        # live training loss
        if ev.phase == "trn":
            if _finite(ev.loss):
                x = (ev.epoch - 1) + (ev.batch_ndx + 1) / max(1, ev.batch_count)
                self._loss.add(x, float(ev.loss))
                self._loss_version += 1

    @_take.register
    def _on_rank_timings(self, ev: RankTimings) -> None:
        self._ranks = tuple(MappingProxyType(dict(r)) for r in ev.ranks)
        self._straggler = None if ev.straggler is None else MappingProxyType(dict(ev.straggler))
        batches = max(1, self._clock.batch_count if self._clock is not None else 1)
        x = (ev.epoch - 1) + (ev.batch_ndx + 1) / batches
        for r in ev.ranks:
            w = window_of(r)
            history = self._rank_history.setdefault(int(r["rank"]),
                                                    deque(maxlen=RANK_HISTORY_POINTS))
            history.append((x, w.own_s, w.total_s))
        self._ranks_version += 1

    def _watch_missed(self) -> bool:
        """NODULES MISSED is the classifier's alarm: not for a seg or malignancy run."""
        run = self._estimate.run
        return (run.options or {}).get("task", "nodule") in (None, "nodule") if run else True

    @_take.register
    def _on_metrics(self, ev: EpochMetrics) -> None:
        pm = PhaseMetrics(
            phase=ev.phase, epoch=ev.epoch, metrics=MappingProxyType(dict(ev.metrics)),
            neg_correct=ev.neg_correct, neg_count=ev.neg_count,
            pos_correct=ev.pos_correct, pos_count=ev.pos_count,
            total_samples=ev.total_samples,
            watch_missed=self._watch_missed(),
            score=None if ev.score is None else MappingProxyType(dict(ev.score)))
        self._metrics[ev.phase] = pm
        if ev.score is not None:
            # a resumed run may repeat an epoch: the newest numbers win
            self._scores = [s for s in self._scores if s[0] != ev.epoch][-1:]
            self._scores.append((ev.epoch, pm.score))
        point = EpochPoint(
            epoch=ev.epoch,
            loss_all=_opt_float(ev.metrics, LOSS.key),
            loss_pos=_opt_float(ev.metrics, LOSS_POS.key),
            # % of nodules right; a seg run's: % of nodule pixels found (its recall)
            correct_pos=_opt_float(ev.metrics, CORRECT_POS.key) if CORRECT_POS.key in ev.metrics
            else _percent(_opt_float(ev.metrics, RECALL.key)),
            correct_all=_opt_float(ev.metrics, CORRECT.key),
            total_samples=ev.total_samples,
            cpm=_opt_float(ev.metrics, CPM.key))
        hist = self._history.setdefault(ev.phase, [])
        # a resumed run may repeat an epoch: the newest numbers win
        hist[:] = [p for p in hist if p.epoch != ev.epoch]
        hist.append(point)
        hist.sort(key=lambda p: p.epoch)
        if len(hist) > 10_000:
            del hist[: len(hist) - 10_000]
        self._metrics_version += 1

    @_take.register
    def _on_examples(self, ev: ExamplesSaved) -> None:
        self._examples[ev.epoch] = ev.path
        self._metrics_version += 1

    @_take.register
    def _on_log(self, ev: LogRecord) -> None:
        self._add_log(ev.t, ev.level, ev.message)

    def _add_log(self, t: float, level: str, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self._log.append(LogLine(t=t, level=level.upper(), message=line))
            self._log_total += 1
