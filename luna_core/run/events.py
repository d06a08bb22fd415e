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
import types
import typing
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
    run_id: str = ""                    # unique to this process of the run (the queue's key)


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
class StopAfterEpoch(Event):
    """The run ends once ``epoch`` is validated and checkpointed (a command asked; a resume
    goes on at the next epoch)."""
    kind: ClassVar[str] = "stop_after_epoch"
    epoch: int


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
    (luna_core.run.example_file has the format)."""
    kind: ClassVar[str] = "examples"
    epoch: int
    path: str
    misses: int = 0
    false_alarms: int = 0
    best: int = 0
    counts: dict[str, int] = field(default_factory=dict)   # per kind, every task's kinds


@dataclass
class RankTimings(Event):
    """Under torchrun: every rank's timings over the last window of training batches and the
    straggler named from them (luna_core.run.straggler; rank 0 sends it)."""
    kind: ClassVar[str] = "rank_timings"
    epoch: int
    batch_ndx: int               # the window's last training batch
    total_samples: int
    ranks: list[dict[str, Any]]  # RankWindow's fields, with "score" and "self_score"
    straggler: dict[str, Any] | None = None   # rank, part, reason, named_for_s
    named_s: float = 0.0         # the run's time so far with a straggler named


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, PhaseStarted, BatchDone, EpochMetrics, StatusChanged,
                CheckpointSaved, NonFiniteLoss, LogRecord, RunFinished, OptimizerChanged,
                ExamplesSaved, StopAfterEpoch, RankTimings)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {"v": EVENT_FORMAT_VERSION, "kind": event.kind}
    for f in dataclasses.fields(event):
        if not f.metadata.get("transient"):
            data[f.name] = getattr(event, f.name)
    return data


_ANY: frozenset = frozenset()


def _types(hint) -> frozenset:
    """The types of value JSON gives back that a field annotated ``hint`` takes (exact types:
    an int field takes no bool, a float field takes an int); empty: anything."""
    if hint is Any:
        return _ANY
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        parts = [_types(a) for a in typing.get_args(hint)]
        return _ANY if _ANY in parts else frozenset().union(*parts)
    if hint is float:
        return frozenset({int, float})
    if hint is type(None):
        return frozenset({type(None)})
    return frozenset({typing.get_origin(hint) or hint})


def _numbers_by_name(hint) -> bool:
    """Is ``hint`` dict[str, float] (a metrics dict: numbers or null by name)?"""
    return typing.get_origin(hint) is dict and typing.get_args(hint) == (str, float)


_SCHEMAS: dict[type, tuple[dict[str, frozenset], frozenset[str], frozenset[str]]] = {}


def _schema(cls: type[Event]) -> tuple[dict[str, frozenset], frozenset[str], frozenset[str]]:
    """(the types each field takes, the fields without a default, the dict[str, float]
    fields) of an event class."""
    if cls not in _SCHEMAS:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        _SCHEMAS[cls] = ({f.name: _types(hints[f.name]) for f in fields},
                         frozenset(f.name for f in fields
                                   if f.default is dataclasses.MISSING
                                   and f.default_factory is dataclasses.MISSING),
                         frozenset(f.name for f in fields if _numbers_by_name(hints[f.name])))
    return _SCHEMAS[cls]


_NUMBER_OR_NULL = frozenset({int, float, type(None)})


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a dict of ``event_to_dict`` stands for. Fields this version does not know are
    skipped; a missing field, or one of the wrong type, raises TypeError naming it (a reader
    never gets an event it would trip over later)."""
    if not isinstance(data, dict):
        raise TypeError(f"an event is a JSON object, not {type(data).__name__}")
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    data.pop("v", None)
    checks, required, by_name = _schema(cls)
    missing = sorted(required - data.keys())
    if missing:
        raise TypeError(f"missing field{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)}")
    known = {}
    for name, value in data.items():
        allowed = checks.get(name)
        if allowed is None:
            continue                            # a field of a newer version: skipped
        if allowed and type(value) not in allowed:
            raise TypeError(f"field {name} is {_brief(value)}")
        known[name] = value
    for name in by_name:
        value = known.get(name)
        if value is not None and not all(type(k) is str and type(v) in _NUMBER_OR_NULL
                                         for k, v in value.items()):
            raise TypeError(f"field {name} is {_brief(value)}")
    return cls(**known)


def _brief(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:39] + '…'}"


Sink = Callable[[Event], None]


#: How an ERROR log line about a side output (TensorBoard, the index, examples) starts: the
#: run goes on without it, and --notify-cmd hears about it (LUNA_EVENT=side_output_failed).
SIDE_OUTPUT_FAILED = "side output failed"


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
                self._emit(LogRecord(level="ERROR", message=(
                    f"{SIDE_OUTPUT_FAILED}: {type(sink).__name__} was removed ({exc}); "
                    f"training goes on")))
