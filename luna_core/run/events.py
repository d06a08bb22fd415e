"""Typed events the training loop sends out, and the sinks that receive them.

Every consumer (console log, TensorBoard, the JSONL event file, the cockpit, an attached
cockpit) sees the same events. Events are plain dataclasses of JSON-able values so that the
event file is a faithful record: ``event_to_dict`` / ``event_from_dict`` round-trip them.

Sinks are called synchronously in the training thread, so a sink must be cheap: the cockpit's
sink only stores the event for the UI to poll.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

EVENT_FORMAT_VERSION = 1

# Run states, as shown by the cockpit and `luna-tui runs`.
STARTING = "starting"
TRAINING = "training"
VALIDATING = "validating"
PAUSED = "paused"
STOPPING = "stopping"
FINISHED = "finished"
STOPPED = "stopped"
FAILED = "failed"


def working_state(phase: str) -> str:
    """The state of a run at work in ``phase``: "trn" is training, "val" validating."""
    return VALIDATING if phase == "val" else TRAINING


def _now() -> float:
    return time.time()


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    t: float = field(default_factory=_now, kw_only=True)


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_dir: str
    options: dict[str, Any]
    epochs: int                  # last epoch number of the run (1-based, inclusive)
    start_epoch: int             # first epoch this process runs (>1 or mid-epoch on resume)
    trn_samples: int
    val_samples: int
    trn_pos: int
    val_pos: int
    device: str
    pid: int
    resumed_from: str | None = None
    host: str = ""
    world_size: int = 1                 # processes under torchrun (DDP)
    control_socket: str | None = None   # Unix socket that takes commands (luna-tui attach)


@dataclass
class PhaseStarted(Event):
    kind: ClassVar[str] = "phase_started"
    phase: str                   # "trn" or "val"
    epoch: int
    batch_count: int
    sample_count: int
    start_batch: int = 0         # > 0 when resuming inside the epoch


@dataclass
class BatchDone(Event):
    kind: ClassVar[str] = "batch_done"
    phase: str
    epoch: int
    batch_ndx: int               # 0-based index of the batch just finished
    batch_count: int
    samples: int                 # samples in this batch
    total_samples: int           # training samples seen so far in the run (TensorBoard step)
    loss: float                  # mean loss of the batch (nan/inf when it was not finite)
    data_s: float                # seconds the loop waited for this batch from the loader
    compute_s: float             # seconds from having the batch to asking for the next
    active_s: float              # seconds of this phase so far, time spent paused excluded


@dataclass
class EpochMetrics(Event):
    kind: ClassVar[str] = "epoch_metrics"
    phase: str
    epoch: int
    total_samples: int
    metrics: dict[str, float]    # the TensorBoard scalars: loss/all, correct/pos, pr/f1_score...
    neg_correct: int
    neg_count: int
    pos_correct: int
    pos_count: int
    # A validation's LUNA16 score and ranking metrics (luna_core.score.ValidationScore's
    # to_dict: cpm, its interval, sensitivity at the FP levels, the FROC and PR curves
    # thinned, auc, average_precision, confusion, histograms); None for training.
    score: dict | None = None
    # (labels, positive probabilities) as numpy arrays for the PR curve and histograms;
    # in-process only, never written to the event file.
    per_sample: Any = field(default=None, repr=False, compare=False,
                            metadata={"transient": True})


@dataclass
class StatusChanged(Event):
    kind: ClassVar[str] = "status"
    state: str
    detail: str = ""


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    path: str
    reason: str                  # "epoch", "request", "stop", "nonfinite", "signal"
    epoch: int
    batch_ndx: int               # batches of that epoch's training phase already done
    total_samples: int


@dataclass
class NonFiniteLoss(Event):
    kind: ClassVar[str] = "nonfinite"
    phase: str
    epoch: int
    batch_ndx: int
    action: str                  # "stop", "skip" or "pause"


@dataclass
class OptimizerChanged(Event):
    """The learning rate / momentum changed at a batch boundary (on every rank)."""
    kind: ClassVar[str] = "optimizer_changed"
    lr: float
    momentum: float
    old_lr: float
    old_momentum: float
    epoch: int
    batch_ndx: int               # training batches of the epoch done before the change
    total_samples: int
    source: str = ""


@dataclass
class LogRecord(Event):
    kind: ClassVar[str] = "log"
    level: str
    message: str


@dataclass
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    state: str                   # FINISHED, STOPPED or FAILED
    exit_code: int
    error: str | None = None
    last_checkpoint: str | None = None


@dataclass
class ExamplesSaved(Event):
    """A validation's examples (worst misses, false alarms, best hits) are in ``path``
    (luna_core.run.examples has the format)."""
    kind: ClassVar[str] = "examples"
    epoch: int
    path: str
    misses: int
    false_alarms: int
    best: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, PhaseStarted, BatchDone, EpochMetrics, StatusChanged,
                CheckpointSaved, NonFiniteLoss, LogRecord, RunFinished, OptimizerChanged,
                ExamplesSaved)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {"v": EVENT_FORMAT_VERSION, "kind": event.kind}
    for f in dataclasses.fields(event):
        if not f.metadata.get("transient"):
            data[f.name] = getattr(event, f.name)
    return data


def event_from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    data.pop("v", None)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


Sink = Callable[[Event], None]


class EventBus:
    """Fans events out to sinks; a failing sink is dropped with one log line, never kills
    the run."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])
        self._lock = threading.RLock()  # log records may come from other threads

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        with self._lock:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink(event)
            except Exception as exc:  # noqa: BLE001 - a broken sink must not stop training
                self.sinks.remove(sink)
                self._emit(LogRecord(level="ERROR",
                                    message=f"event sink {sink!r} failed and was removed: {exc}"))
