"""The in-process trainer as a cockpit runs it: in a thread (a Textual thread worker), ending
with a ``TrainerResult`` that the worker returns. No Textual here."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from luna_core.run.failure import describe_exception

Runner = Callable[[], int]


@dataclass(frozen=True)
class TrainerResult:
    """What the trainer ended with: its exit code and, when it raised, what failed, where,
    and the traceback."""

    exit_code: int
    failure: str | None = None
    traceback: str | None = None


def run_trainer(runner: Runner) -> TrainerResult:
    """Call ``runner``; an exception becomes a failed result (exit code 1)."""
    try:
        return TrainerResult(int(runner() or 0))
    except BaseException as exc:  # noqa: BLE001 - shown in the cockpit, exit non-zero
        return TrainerResult(1, describe_exception(exc), traceback.format_exc())


class TrainerThread:
    """``run`` is the worker's function: it returns the trainer's result (the app reads it
    from the worker's state change) and touches nothing else. ``done`` and ``wait`` tell
    other threads (the hang-up exit) without going through the UI's event loop."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._result: Future[TrainerResult] = Future()

    def run(self) -> TrainerResult:
        result = TrainerResult(1)
        try:
            result = run_trainer(self.runner)
            return result
        finally:
            self._result.set_result(result)

    @property
    def done(self) -> bool:
        return self._result.done()

    def wait(self) -> TrainerResult:
        return self._result.result()
