"""Fold the training loop's events into a snapshot the cockpit can poll.

``EventCollector`` is an event sink: the trainer thread calls it synchronously for every
event, so a call does O(1) amortised work under a lock and never touches the UI. The UI asks
for ``collector.snapshot()`` a few times a second and gets an immutable ``RunSnapshot``.

Nothing here imports Textual: the same collector is fed by the in-process trainer today and
by a JSONL event file later (``luna-tui attach``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from luna_core.run.events import (
    FAILED,
    FINISHED,
    PAUSED,
    STARTING,
    STOPPED,
    STOPPING,
    TRAINING,
    VALIDATING,
    BatchDone,
    CheckpointSaved,
    EpochMetrics,
    Event,
    LogRecord,
    NonFiniteLoss,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StatusChanged,
)
from luna_core.run.runs import CRASHED

#: Batches at the start of every phase left out of rates and ETAs (loader start-up,
#: cudnn autotuning, first-touch allocations make them unrepresentative).
WARMUP_BATCHES = 3
#: Recent batches of the current phase used for samples/s and the data-wait share.
RATE_WINDOW = 50
#: Most points kept for the live per-batch training-loss line.
MAX_LOSS_POINTS = 2000
MAX_LOG_LINES = 2000
MAX_CHECKPOINTS = 50
MAX_ERRORS = 20

#: Data-wait share at or above which the loop is called loader-bound, and at or below which
#: it is called compute-bound.
LOADER_BOUND_SHARE = 0.5
COMPUTE_BOUND_SHARE = 0.2

#: The "99.7 % correct and 0 % of nodules" alarm: positive class at most this % correct...
POS_ALARM_MAX = 10.0
#: ...while "all" is at least this % correct.
ALL_ALARM_MIN = 90.0

#: States after which nothing more happens in this process of the run. CRASHED is never sent
#: by a trainer: ``luna-tui attach`` folds it in when the run's process is gone without a
#: final event (crash, SIGKILL, reboot).
ENDED_STATES = (FINISHED, STOPPED, FAILED, CRASHED)
PHASE_STATE = {"trn": TRAINING, "val": VALIDATING}


class SnapshotSource(Protocol):
    """Where the cockpit gets its data: the in-process collector or, later, a file reader."""

    def snapshot(self) -> RunSnapshot: ...


# --------------------------------------------------------------------------------------------
# Snapshot value objects
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseMetrics:
    """The latest epoch's metrics of one phase ("trn" or "val")."""

    phase: str
    epoch: int
    metrics: Mapping[str, float]
    neg_correct: int
    neg_count: int
    pos_correct: int
    pos_count: int

    def get(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return None if value is None else float(value)

    @property
    def all_correct(self) -> int:
        return self.neg_correct + self.pos_correct

    @property
    def all_count(self) -> int:
        return self.neg_count + self.pos_count

    @property
    def pos_alarm(self) -> bool:
        """True when "all" looks excellent but the positive class is almost never right."""
        pos = self.get("correct/pos")
        if pos is None and self.pos_count:
            pos = 100.0 * self.pos_correct / self.pos_count
        every = self.get("correct/all")
        if every is None and self.all_count:
            every = 100.0 * self.all_correct / self.all_count
        if pos is None or every is None or not self.pos_count:
            return False
        return pos <= POS_ALARM_MAX and every >= ALL_ALARM_MIN


@dataclass(frozen=True)
class EpochPoint:
    epoch: int
    loss_all: float | None
    loss_pos: float | None
    correct_pos: float | None
    correct_all: float | None


@dataclass(frozen=True)
class Bottleneck:
    """Where recent batch time went: waiting for the loader vs computing."""

    phase: str
    batches: int
    data_s: float
    compute_s: float

    @property
    def data_share(self) -> float:
        total = self.data_s + self.compute_s
        return self.data_s / total if total > 0 else 0.0

    @property
    def compute_share(self) -> float:
        total = self.data_s + self.compute_s
        return self.compute_s / total if total > 0 else 0.0

    @property
    def verdict(self) -> str:
        share = self.data_share
        if share >= LOADER_BOUND_SHARE:
            return "loader-bound"
        if share <= COMPUTE_BOUND_SHARE:
            return "compute-bound"
        return "partly loader-bound"

    @property
    def data_ms(self) -> float:
        return 1000.0 * self.data_s / self.batches if self.batches else 0.0

    @property
    def compute_ms(self) -> float:
        return 1000.0 * self.compute_s / self.batches if self.batches else 0.0


@dataclass(frozen=True)
class LogLine:
    t: float
    level: str
    message: str


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the cockpit shows, as of one moment. Immutable; cheap to make."""

    version: int = 0                          # bumps on every event folded in
    state: str = STARTING
    state_detail: str = ""
    # run
    run_dir: str = ""
    device: str = ""
    pid: int | None = None
    resumed_from: str | None = None
    epochs: int | None = None                 # last epoch (inclusive)
    start_epoch: int | None = None
    trn_samples: int | None = None
    val_samples: int | None = None
    trn_pos: int | None = None
    val_pos: int | None = None
    # where the loop is
    epoch: int | None = None
    phase: str | None = None
    batches_done: int = 0                     # batch_ndx + 1 of the last batch of the phase
    batch_count: int = 0
    phase_sample_count: int = 0
    total_samples: int = 0
    # speed and estimates (seconds of active time; paused time never counts)
    samples_per_s: float | None = None
    phase_remaining_s: float | None = None
    run_remaining_s: float | None = None
    eta_rough: bool = True                    # an estimate still rests on guesses
    # metrics
    metrics: Mapping[str, PhaseMetrics] = field(default_factory=dict)
    history: Mapping[str, tuple[EpochPoint, ...]] = field(default_factory=dict)
    metrics_version: int = 0
    batch_loss: tuple[tuple[float, float], ...] = ()   # (fractional epoch, mean loss)
    batch_loss_version: int = 0
    nonfinite_count: int = 0
    last_nonfinite: NonFiniteLoss | None = None
    paused_by_nonfinite: bool = False
    bottleneck: Bottleneck | None = None
    # records
    log: tuple[LogLine, ...] = ()
    log_total: int = 0                        # lines ever received (log keeps the last ones)
    checkpoints: tuple[CheckpointSaved, ...] = ()
    checkpoint_total: int = 0
    errors: tuple[str, ...] = ()
    finished: RunFinished | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def running(self) -> bool:
        return not self.ended

    @property
    def last_checkpoint(self) -> CheckpointSaved | None:
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def phase_fraction(self) -> float:
        return self.batches_done / self.batch_count if self.batch_count else 0.0


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
    """Rate bookkeeping for the phase in progress."""

    phase: str
    epoch: int
    start_batch: int
    batch_count: int
    done_here: int = 0                 # batches finished by this process in this phase
    warm_active_s: float | None = None
    warm_done: int = 0
    last_active_s: float = 0.0


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


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
    """A thread-safe event sink that keeps the state the cockpit needs."""

    def __init__(self, *, max_loss_points: int = MAX_LOSS_POINTS,
                 max_log_lines: int = MAX_LOG_LINES, rate_window: int = RATE_WINDOW,
                 warmup_batches: int = WARMUP_BATCHES) -> None:
        self._lock = threading.Lock()
        self._warmup = max(0, warmup_batches)
        self._version = 0
        self._cached: RunSnapshot | None = None
        self._state = STARTING
        self._state_detail = ""
        self._run: RunStarted | None = None
        self._epoch: int | None = None
        self._phase: str | None = None
        self._batches_done = 0
        self._batch_count = 0
        self._phase_sample_count = 0
        self._total_samples = 0
        self._clock: _PhaseClock | None = None
        self._sec_per_batch: dict[str, float] = {}      # learned after warm-up, per phase
        self._crude_sec_per_batch: dict[str, float] = {}  # warm-up included, if nothing better
        self._batches_per_phase: dict[str, int] = {}
        self._samples_per_phase: dict[str, int] = {}
        self._window: deque[tuple[int, float, float]] = deque(maxlen=max(1, rate_window))
        self._window_is_warmup = True
        self._metrics: dict[str, PhaseMetrics] = {}
        self._history: dict[str, list[EpochPoint]] = {"trn": [], "val": []}
        self._metrics_version = 0
        self._loss = DecimatingSeries(max_loss_points)
        self._loss_version = 0
        self._nonfinite_count = 0
        self._last_nonfinite: NonFiniteLoss | None = None
        self._paused_by_nonfinite = False
        self._log: deque[LogLine] = deque(maxlen=max(1, max_log_lines))
        self._log_total = 0
        self._checkpoints: deque[CheckpointSaved] = deque(maxlen=MAX_CHECKPOINTS)
        self._checkpoint_total = 0
        self._errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self._finished: RunFinished | None = None

    # -- sink ------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            try:
                self._fold(event)
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
        run = self._run
        phase_rem, run_rem, rough = self._estimates()
        window = self._window
        samples = sum(w[0] for w in window)
        secs = sum(w[1] + w[2] for w in window)
        bottleneck = None
        if window and self._phase is not None:
            bottleneck = Bottleneck(phase=self._phase, batches=len(window),
                                    data_s=sum(w[1] for w in window),
                                    compute_s=sum(w[2] for w in window))
        return RunSnapshot(
            version=self._version,
            state=self._state,
            state_detail=self._state_detail,
            run_dir=run.run_dir if run else "",
            device=run.device if run else "",
            pid=run.pid if run else None,
            resumed_from=run.resumed_from if run else None,
            epochs=run.epochs if run else None,
            start_epoch=run.start_epoch if run else None,
            trn_samples=run.trn_samples if run else None,
            val_samples=run.val_samples if run else None,
            trn_pos=run.trn_pos if run else None,
            val_pos=run.val_pos if run else None,
            epoch=self._epoch,
            phase=self._phase,
            batches_done=self._batches_done,
            batch_count=self._batch_count,
            phase_sample_count=self._phase_sample_count,
            total_samples=self._total_samples,
            samples_per_s=(samples / secs) if secs > 0 else None,
            phase_remaining_s=phase_rem,
            run_remaining_s=run_rem,
            eta_rough=rough,
            metrics=MappingProxyType(dict(self._metrics)),
            history=MappingProxyType({k: tuple(v) for k, v in self._history.items()}),
            metrics_version=self._metrics_version,
            batch_loss=self._loss.points(),
            batch_loss_version=self._loss_version,
            nonfinite_count=self._nonfinite_count,
            last_nonfinite=self._last_nonfinite,
            paused_by_nonfinite=self._paused_by_nonfinite,
            bottleneck=bottleneck,
            log=tuple(self._log),
            log_total=self._log_total,
            checkpoints=tuple(self._checkpoints),
            checkpoint_total=self._checkpoint_total,
            errors=tuple(self._errors),
            finished=self._finished,
        )

    # -- folding ---------------------------------------------------------------------------

    def _fold(self, event: Event) -> None:
        if isinstance(event, BatchDone):
            self._on_batch(event)
        elif isinstance(event, PhaseStarted):
            self._on_phase(event)
        elif isinstance(event, EpochMetrics):
            self._on_metrics(event)
        elif isinstance(event, LogRecord):
            self._add_log(event.t, event.level, event.message)
            if event.level.upper() in ("ERROR", "CRITICAL"):
                self._errors.append(event.message)
        elif isinstance(event, StatusChanged):
            self._set_state(event.state, event.detail)
        elif isinstance(event, CheckpointSaved):
            self._checkpoints.append(event)
            self._checkpoint_total += 1
        elif isinstance(event, NonFiniteLoss):
            self._nonfinite_count += 1
            self._last_nonfinite = event
            if event.action == "pause":
                self._paused_by_nonfinite = True
        elif isinstance(event, RunStarted):
            # a new process of the run (first start, or a resume appended to the same event
            # file after the previous one stopped or died): whatever ended, ended before it
            self._run = event
            self._finished = None
            self._set_state(STARTING)
        elif isinstance(event, RunFinished):
            self._finished = event
            self._set_state(event.state, event.error or "")
            if event.error:
                self._errors.append(event.error)

    def _set_state(self, state: str, detail: str = "") -> None:
        self._state = state
        self._state_detail = detail
        if state != PAUSED:
            self._paused_by_nonfinite = False

    def _on_phase(self, ev: PhaseStarted) -> None:
        self._epoch, self._phase = ev.epoch, ev.phase
        self._batches_done = ev.start_batch
        self._batch_count = ev.batch_count
        self._phase_sample_count = ev.sample_count
        self._batches_per_phase[ev.phase] = ev.batch_count
        self._samples_per_phase[ev.phase] = ev.sample_count
        self._clock = _PhaseClock(ev.phase, ev.epoch, ev.start_batch, ev.batch_count)
        self._window.clear()
        self._window_is_warmup = True
        if self._state not in (PAUSED, STOPPING) + ENDED_STATES:
            self._set_state(PHASE_STATE.get(ev.phase, self._state))

    def _on_batch(self, ev: BatchDone) -> None:
        clock = self._clock
        if clock is None or clock.phase != ev.phase or clock.epoch != ev.epoch:
            # No PhaseStarted seen (e.g. a file opened mid-phase): start from this batch.
            clock = _PhaseClock(ev.phase, ev.epoch, ev.batch_ndx, ev.batch_count)
            self._clock = clock
            self._epoch, self._phase = ev.epoch, ev.phase
            self._batches_per_phase.setdefault(ev.phase, ev.batch_count)
            self._window.clear()
            self._window_is_warmup = True
        clock.batch_count = ev.batch_count
        # batches done by this process in this phase, from the index rather than by counting
        # events: the event file keeps only a few batch events a second
        clock.done_here = max(clock.done_here + 1, ev.batch_ndx + 1 - clock.start_batch)
        clock.last_active_s = ev.active_s
        self._batches_done = ev.batch_ndx + 1
        self._batch_count = ev.batch_count
        self._total_samples = max(self._total_samples, ev.total_samples)
        if self._state in (STARTING,):
            self._set_state(PHASE_STATE.get(ev.phase, self._state))

        # rates: after warm-up, the slope of active time over batches
        if clock.done_here <= self._warmup or clock.warm_active_s is None:
            if clock.done_here >= self._warmup:
                clock.warm_active_s = ev.active_s
                clock.warm_done = clock.done_here
            if clock.done_here > 0 and ev.active_s > 0:
                self._crude_sec_per_batch[ev.phase] = ev.active_s / clock.done_here
        else:
            n = clock.done_here - clock.warm_done
            if n > 0:
                self._sec_per_batch[ev.phase] = (ev.active_s - clock.warm_active_s) / n

        # recent window: data wait vs compute, samples/s (warm-up batches only until better)
        if clock.done_here > self._warmup and self._window_is_warmup:
            self._window.clear()
            self._window_is_warmup = False
        self._window.append((ev.samples, max(0.0, ev.data_s), max(0.0, ev.compute_s)))

        # live training loss
        if ev.phase == "trn":
            if _finite(ev.loss):
                x = (ev.epoch - 1) + (ev.batch_ndx + 1) / max(1, ev.batch_count)
                self._loss.add(x, float(ev.loss))
                self._loss_version += 1

    def _on_metrics(self, ev: EpochMetrics) -> None:
        pm = PhaseMetrics(
            phase=ev.phase, epoch=ev.epoch, metrics=MappingProxyType(dict(ev.metrics)),
            neg_correct=ev.neg_correct, neg_count=ev.neg_count,
            pos_correct=ev.pos_correct, pos_count=ev.pos_count)
        self._metrics[ev.phase] = pm
        point = EpochPoint(
            epoch=ev.epoch,
            loss_all=_opt_float(ev.metrics, "loss/all"),
            loss_pos=_opt_float(ev.metrics, "loss/pos"),
            correct_pos=_opt_float(ev.metrics, "correct/pos"),
            correct_all=_opt_float(ev.metrics, "correct/all"))
        hist = self._history.setdefault(ev.phase, [])
        # a resumed run may repeat an epoch: the newest numbers win
        hist[:] = [p for p in hist if p.epoch != ev.epoch]
        hist.append(point)
        hist.sort(key=lambda p: p.epoch)
        if len(hist) > 10_000:
            del hist[: len(hist) - 10_000]
        self._metrics_version += 1

    def _add_log(self, t: float, level: str, message: str) -> None:
        for line in str(message).splitlines() or [""]:
            self._log.append(LogLine(t=t, level=level.upper(), message=line))
            self._log_total += 1

    # -- estimates -------------------------------------------------------------------------

    def _rate(self, phase: str) -> tuple[float | None, bool]:
        """Seconds per batch for ``phase`` and whether it is a guess."""
        if phase in self._sec_per_batch:
            return self._sec_per_batch[phase], False
        if phase in self._crude_sec_per_batch:
            return self._crude_sec_per_batch[phase], True
        # validation not seen yet: borrow training's per-sample rate (an overestimate:
        # validation does no backward pass)
        other = "trn" if phase == "val" else "val"
        rate = self._sec_per_batch.get(other) or self._crude_sec_per_batch.get(other)
        if rate is None:
            return None, True
        mine, theirs = self._batch_size(phase), self._batch_size(other)
        if mine and theirs:
            rate = rate * mine / theirs
        return rate, True

    def _batch_size(self, phase: str) -> float | None:
        batches = self._batches_per_phase.get(phase)
        samples = self._samples_per_phase.get(phase)
        if batches and samples:
            return samples / batches
        if self._run is not None:
            bs = self._run.options.get("batch_size") if self._run.options else None
            if isinstance(bs, int | float) and bs > 0:
                return float(bs)
        return None

    def _phase_batches(self, phase: str) -> tuple[int | None, bool]:
        if phase in self._batches_per_phase:
            return self._batches_per_phase[phase], False
        run = self._run
        if run is None:
            return None, True
        samples = run.trn_samples if phase == "trn" else run.val_samples
        bs = self._batch_size("trn") or self._batch_size(phase)
        if not samples or not bs:
            return None, True
        return math.ceil(samples / bs), True

    def _phase_duration(self, phase: str) -> tuple[float | None, bool]:
        batches, rough_b = self._phase_batches(phase)
        rate, rough_r = self._rate(phase)
        if batches is None or rate is None:
            return None, True
        return batches * rate, rough_b or rough_r

    def _estimates(self) -> tuple[float | None, float | None, bool]:
        if self._state in ENDED_STATES:
            return 0.0, 0.0, False
        phase, epoch = self._phase, self._epoch
        if phase is None or epoch is None:
            return None, None, True
        rate, rough = self._rate(phase)
        if rate is None:
            return None, None, True
        phase_rem = max(0, self._batch_count - self._batches_done) * rate
        run_rem = phase_rem
        run = self._run
        last_epoch = run.epochs if run is not None else epoch
        later: list[str] = []
        if phase == "trn":
            later.append("val")
        for _ in range(epoch + 1, last_epoch + 1):
            later += ["trn", "val"]
        for ph in later:
            dur, r = self._phase_duration(ph)
            if dur is None:
                return phase_rem, None, True
            run_rem += dur
            rough = rough or r
        return phase_rem, run_rem, rough
