"""What the cockpit shows, as immutable values: ``RunSnapshot`` and its parts.

An ``EventCollector`` (luna_tui.model.collector) builds them from the training loop's events; the
panes only read them. Nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from luna_core.run.alerts import missed
from luna_core.run.events import STARTING, CheckpointSaved, NonFiniteLoss, RunFinished
from luna_core.run.metric_catalog import CORRECT, CORRECT_POS
from luna_core.run.runs import ENDED_STATES

#: Data-wait share at or above which the loop is called loader-bound, and at or below which
#: it is called compute-bound.
LOADER_BOUND_SHARE = 0.5
COMPUTE_BOUND_SHARE = 0.2


class SnapshotSource(Protocol):
    """Where the cockpit gets its data: the in-process collector, or a run's event file."""

    def snapshot(self) -> RunSnapshot: ...


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
    total_samples: int = 0          # training samples seen when this epoch's phase ended
    score: Mapping | None = None    # a validation's LUNA16 score (EpochMetrics.score)
    watch_missed: bool = True       # NODULES MISSED applies (the classifier's task only)

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
        if not self.watch_missed:
            return False
        pos = self.get(CORRECT_POS.key)
        if pos is None and self.pos_count:
            pos = 100.0 * self.pos_correct / self.pos_count
        every = self.get(CORRECT.key)
        if every is None and self.all_count:
            every = 100.0 * self.all_correct / self.all_count
        return missed(pos, every, self.pos_count)


@dataclass(frozen=True)
class EpochPoint:
    epoch: int
    loss_all: float | None
    loss_pos: float | None
    correct_pos: float | None
    correct_all: float | None
    total_samples: int = 0
    cpm: float | None = None        # validation: LUNA16's CPM


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
    task: str = "nodule"                      # what the run trains (--task)
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
    lr: float | None = None                    # the optimizer's, as of the last change
    momentum: float | None = None
    samples_per_s: float | None = None
    phase_remaining_s: float | None = None
    run_remaining_s: float | None = None
    eta_rough: bool = True                    # an estimate still rests on guesses
    # metrics
    metrics: Mapping[str, PhaseMetrics] = field(default_factory=dict)
    history: Mapping[str, tuple[EpochPoint, ...]] = field(default_factory=dict)
    metrics_version: int = 0
    # the latest validations' scores, oldest first, at most two: (epoch, score)
    scores: tuple[tuple[int, Mapping], ...] = ()
    # validations whose examples were saved, oldest first: (epoch, path)
    examples: tuple[tuple[int, str], ...] = ()
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
    summary: tuple[str, ...] = ()             # the run's summary, once it has ended
    # torchrun: every rank's latest window of timings (luna_core.run.straggler's
    # RankWindow fields with "score" and "self_score"), the named straggler, and per rank
    # its (fractional epoch, own seconds a batch, step seconds a batch) over the run
    ranks: tuple[Mapping, ...] = ()
    straggler: Mapping | None = None
    rank_history: Mapping[int, tuple[tuple[float, float, float], ...]] = field(
        default_factory=dict)
    ranks_version: int = 0

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
    def last_checkpoint_path(self) -> str | None:
        """The newest checkpoint: the run's final word on it, else the last one saved."""
        said = self.finished.last_checkpoint if self.finished is not None else None
        return said or (self.checkpoints[-1].path if self.checkpoints else None)

    @property
    def phase_fraction(self) -> float:
        return self.batches_done / self.batch_count if self.batch_count else 0.0
