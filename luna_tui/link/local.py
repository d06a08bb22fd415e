"""A run in this process (`luna-tui` in a terminal): ``LocalLink``. The trainer runs in a thread
the app starts (a Textual thread worker), ending with a ``TrainerResult`` that the worker
returns; its events go to an ``EventCollector``, its commands through a ``CommandChannel``.
No Textual here."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from luna_core.run.events import FAILED, RunFinished
from luna_core.run.failure import describe_exception
from luna_tui.link import Commands, RunLink

Runner = Callable[[], int]


@dataclass(frozen=True)
class TrainerResult:
    """What the trainer ended with: its exit code and, when it raised, what failed, where,
    and the traceback."""

    exit_code: int
    failure: str | None = None
    traceback: str | None = None


def run_trainer(runner: Runner, collector=None) -> TrainerResult:
    """Call ``runner``. An exception becomes a failed result (exit code 1, what failed and
    where, the traceback); ``collector`` (the run's event sink) is told the run failed when
    the loop could not say so itself. The one place an in-process trainer's failure is
    caught (the loop reports the failures it catches as events, luna_core.training)."""
    try:
        return TrainerResult(int(runner() or 0))
    except BaseException as exc:  # noqa: BLE001 - shown in the cockpit, exit non-zero
        failure = describe_exception(exc)
        if collector is not None and collector.snapshot().finished is None:
            collector(RunFinished(state=FAILED, exit_code=1, error=failure))
        return TrainerResult(1, failure, traceback.format_exc())


class TrainerThread:
    """``run`` is the worker's function: it returns the trainer's result (the app reads it
    from the worker's state change) and touches nothing else. ``done`` and ``wait`` tell
    other threads (the hang-up exit) without going through the UI's event loop."""

    def __init__(self, runner: Runner, collector=None) -> None:
        self.runner = runner
        self.collector = collector
        self._result: Future[TrainerResult] = Future()

    def run(self) -> TrainerResult:
        result = TrainerResult(1)
        try:
            result = run_trainer(self.runner, self.collector)
            return result
        finally:
            self._result.set_result(result)

    @property
    def done(self) -> bool:
        return self._result.done()

    def wait(self) -> TrainerResult:
        return self._result.result()


class LocalLink(RunLink):
    """The run in this process: ``source`` (normally an EventCollector the trainer feeds),
    ``commands`` (its CommandChannel), and ``runner``, the training itself, which the app runs
    in a thread worker (None: a run fed by someone else, as in tests)."""

    def __init__(self, source, commands: Commands, runner: Runner | None = None) -> None:
        super().__init__(source, commands)
        self.trainer = None if runner is None else TrainerThread(runner, source)
