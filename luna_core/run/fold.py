"""A run's state, folded from its events once (issue 29): what every reader of the event
stream shares. The cockpit's collector, the end-of-run summary, `luna-tui runs` and `ctl`
read a ``RunState`` instead of each telling the events apart with its own chain; each keeps
only what it alone needs (the cockpit's rates, the summary's clock) in handlers of its own.

``fold`` is dispatched on the event's type (``functools.singledispatch``): a new kind of event
needs its dataclass in luna_core.run.events and, if the state keeps something of it, a handler
here (``@fold.register``); an event the state keeps nothing of changes nothing. A
``RunState`` is itself a sink (``state(event)``). The readers' own handlers and the sinks'
dispatch the same way (``event_method``). No torch here.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from luna_core.run import events as ev

RUNNING = "running"
CRASHED = "crashed"          # no final event, and its process is gone: ended unexpectedly

#: States after which nothing more happens in this process of the run. CRASHED is never sent
#: by a trainer: a reader folds it in when the run's process is gone without a final event
#: (crash, SIGKILL, reboot).
ENDED_STATES = (ev.FINISHED, ev.STOPPED, ev.FAILED, CRASHED)

#: The newest checkpoints and error messages a state keeps (it counts them all).
MAX_CHECKPOINTS = 50
MAX_ERRORS = 20

#: States a new phase does not turn into training or validating.
_HELD = (ev.PAUSED, ev.STOPPING) + ENDED_STATES
_ERROR_LEVELS = ("ERROR", "CRITICAL")


@dataclass
class RunState:
    """A run as its events so far say. A resumed run appends a new process's events (a
    run_started first) to the same stream: ``started`` stays the first run_started, the
    rest is of the newest process unless said otherwise."""

    # the run
    started: ev.RunStarted | None = None     # the first run_started: when the run began
    current: ev.RunStarted | None = None     # this process's (the latest run_started)
    finished: ev.RunFinished | None = None   # this process's final event; None while it runs
    # its state: the last status said, or what the events imply (starting, training...)
    state: str = ev.STARTING
    detail: str = ""
    status: str = ""                         # the state the run last said ('' before one)
    # where it is: the phase in progress, as far as its batches went
    epoch: int | None = None
    phase: str | None = None
    batches_done: int = 0                    # batch_ndx + 1 of the phase's last batch
    batch_count: int = 0
    phase_sample_count: int = 0
    total_samples: int = 0                   # training samples seen (the furthest batch)
    last_batch: ev.BatchDone | None = None   # the latest batch event, of any phase
    #: `runs`' epoch: the furthest epoch a phase started in, or the last validation's epoch
    #: when one came after it (a run resumed from an earlier checkpoint goes back)
    reached: int | None = None
    epochs_done: int = 0                     # the furthest epoch checkpointed at its end
    # the optimizer, as of its last change (the run's options at its start)
    lr: float | None = None
    momentum: float | None = None
    # validations: epoch -> its newest metrics and score (a resumed epoch replaces them),
    # and the last one in the order they came
    validations: dict[int, ev.EpochMetrics] = field(default_factory=dict)
    last_validation: ev.EpochMetrics | None = None
    # records
    checkpoints: deque[ev.CheckpointSaved] = field(
        default_factory=lambda: deque(maxlen=MAX_CHECKPOINTS))
    checkpoint_total: int = 0
    #: the run folder as the run saw it (its run_started's) when it saved the last checkpoint:
    #: what its path is under (luna_core.run.runs.rebase moves it to where the run is read)
    checkpoint_run_dir: str | None = None
    nonfinite_count: int = 0
    last_nonfinite: ev.NonFiniteLoss | None = None
    paused_by_nonfinite: bool = False
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_ERRORS))

    def __call__(self, event: ev.Event) -> None:
        fold(event, self)

    def feed(self, events: Iterable[ev.Event]) -> RunState:
        for event in events:
            fold(event, self)
        return self

    @classmethod
    def of(cls, events: Iterable[ev.Event]) -> RunState:
        """The state ``events`` (all of a run's, in order) leave."""
        return cls().feed(events)

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def set_state(self, state: str, detail: str = "") -> None:
        self.state, self.detail = state, detail
        if state != ev.PAUSED:
            self.paused_by_nonfinite = False


class event_method(functools.singledispatchmethod):     # a decorator: named as one
    """``functools.singledispatchmethod`` for a reader's handlers of events (``@event_method``
    on the default, ``@name.register`` on each handler, the event's class from its
    annotation): the same dispatch, without wrapping the function anew at every call as 3.11
    does (2 µs per event per reader; a replayed event file has 100,000 of them)."""

    def __get__(self, obj, cls=None):
        if obj is None:
            return super().__get__(obj, cls)         # on the class: ``.register`` and all
        dispatch = self.dispatcher.dispatch
        return lambda event, *args: dispatch(event.__class__)(obj, event, *args)


@functools.singledispatch
def fold(event: ev.Event, state: RunState) -> None:
    """Fold ``event`` into ``state``: the handler registered for its type (``@fold.register``
    on a function of (event: ItsClass, state)). An event the state keeps nothing of (a log
    line below ERROR, examples) changes nothing."""


@fold.register
def _started(event: ev.RunStarted, state: RunState) -> None:
    # a new process of the run (first start, or a resume appended to the same event file
    # after the previous one stopped or died): whatever ended, ended before it
    if state.started is None:
        state.started = event
    state.current, state.finished = event, None
    state.lr, state.momentum = event.options.get("lr"), event.options.get("momentum")
    state.set_state(ev.STARTING)


@fold.register
def _phase(event: ev.PhaseStarted, state: RunState) -> None:
    state.epoch, state.phase = event.epoch, event.phase
    state.batches_done, state.batch_count = event.start_batch, event.batch_count
    state.phase_sample_count = event.sample_count
    state.reached = event.epoch if state.reached is None else max(state.reached, event.epoch)
    if state.state not in _HELD:
        state.set_state(ev.working_state(event.phase))


@fold.register
def _batch(event: ev.BatchDone, state: RunState) -> None:
    # a batch without its phase_started (a file opened mid-phase) starts the phase here
    state.epoch, state.phase = event.epoch, event.phase
    state.batches_done, state.batch_count = event.batch_ndx + 1, event.batch_count
    state.total_samples = max(state.total_samples, event.total_samples)
    state.last_batch = event
    if state.state == ev.STARTING:
        state.set_state(ev.working_state(event.phase))


@fold.register
def _metrics(event: ev.EpochMetrics, state: RunState) -> None:
    if event.phase == "val":
        state.validations[event.epoch] = event
        state.last_validation = event
        state.reached = event.epoch


@fold.register
def _status(event: ev.StatusChanged, state: RunState) -> None:
    state.status = event.state
    state.set_state(event.state, event.detail)


@fold.register
def _checkpoint(event: ev.CheckpointSaved, state: RunState) -> None:
    state.checkpoints.append(event)
    state.checkpoint_total += 1
    state.checkpoint_run_dir = state.current.run_dir if state.current else None
    if event.reason == "epoch":
        state.epochs_done = max(state.epochs_done, event.epoch)


@fold.register
def _nonfinite(event: ev.NonFiniteLoss, state: RunState) -> None:
    state.nonfinite_count += 1
    state.last_nonfinite = event
    if event.action == "pause":
        state.paused_by_nonfinite = True


@fold.register
def _optimizer(event: ev.OptimizerChanged, state: RunState) -> None:
    state.lr, state.momentum = event.lr, event.momentum


@fold.register
def _log(event: ev.LogRecord, state: RunState) -> None:
    if event.level.upper() in _ERROR_LEVELS:
        state.errors.append(event.message)


@fold.register
def _finished(event: ev.RunFinished, state: RunState) -> None:
    state.finished = event
    state.set_state(event.state, event.error or "")
    if event.error:
        state.errors.append(event.error)
