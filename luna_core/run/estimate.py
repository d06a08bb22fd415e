"""The book's `enumerateWithEstimate` log lines, for a loop that can pause.

The loop reports each finished batch with the phase's *active* seconds (paused time left
out); the estimate skips the first ``warmup`` batches (worker start-up, cudnn autotuning) and
extrapolates from the rest. Progress lines come at exponentially spaced batches (4, 8, 16...),
so a long epoch prints a handful of lines instead of a line per batch.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable


def format_remaining(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def format_clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


class PhaseEstimate:
    """Remaining-time estimate for one phase from (batches done, active seconds)."""

    def __init__(self, batch_count: int, start_batch: int = 0, warmup: int | None = None):
        self.batch_count = batch_count
        self.start_batch = start_batch
        todo = batch_count - start_batch
        self.warmup = warmup if warmup is not None else min(5, max(todo // 10, 1))
        self._t0: float | None = None      # active seconds when the warm-up ended
        self._n0 = 0

    def update(self, batches_done: int, active_s: float) -> float | None:
        """Seconds remaining, or None while warming up."""
        if batches_done - self.start_batch < self.warmup:
            return None
        if self._t0 is None:
            self._t0, self._n0 = active_s, batches_done
            return None
        rate = (active_s - self._t0) / (batches_done - self._n0)
        return rate * (self.batch_count - batches_done)


class EtaLogger:
    """Emits "E1 Training ----/969, starting" ... "done at <time>, <remaining>" lines."""

    def __init__(self, desc: str, batch_count: int, log: Callable[[str], None],
                 start_batch: int = 0, clock: Callable[[], float] = time.time):
        self.desc = desc
        self.batch_count = batch_count
        self.log = log
        self.clock = clock
        self.estimate = PhaseEstimate(batch_count, start_batch)
        self.next_print = max(4, start_batch + 4)
        self.backoff = 2
        while self.backoff ** 7 < batch_count:
            self.backoff *= 2
        width = len(str(batch_count))
        self._fmt = f"{{:{width}d}}"
        self._dashes = "-" * max(width, 4)

    def start(self) -> None:
        self.log(f"{self.desc} {self._dashes}/{self.batch_count}, starting")

    def batch_done(self, batch_ndx: int, active_s: float) -> None:
        done = batch_ndx + 1
        remaining = self.estimate.update(done, active_s)
        if done >= self.next_print and done < self.batch_count:
            while self.next_print <= done:
                self.next_print *= self.backoff
            if remaining is not None:
                self.log(f"{self.desc} {self._fmt.format(done)}/{self.batch_count}, "
                         f"done at {format_clock(self.clock() + remaining)}, "
                         f"{format_remaining(remaining)}")

    def done(self) -> None:
        self.log(f"{self.desc} {self._dashes}/{self.batch_count}, "
                 f"done at {format_clock(self.clock())}")
