"""Remaining-time rules: one slope-after-warm-up rate, used by the book's log lines and by
the cockpit.

The loop reports each finished batch with the phase's *active* seconds (paused time left
out). ``WarmRate`` is the one rule for seconds per batch: it leaves out the first ``warmup``
batches of a phase (worker start-up, cudnn autotuning, first-touch allocations) and takes
the slope of active time over the batches after them.

- ``EtaLogger`` / ``PhaseEstimate``: the book's `enumerateWithEstimate` log lines, for a
  loop that can pause. Progress lines come at exponentially spaced batches (4, 8, 16...), so
  a long epoch prints a handful of lines instead of a line per batch.
- ``RunEstimate``: the cockpit's "phase ends" and "run ends", from the same rate per phase,
  with guesses (marked rough) for phases not seen yet.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable

from luna_core.run.events import RunStarted

#: Batches at the start of every phase that the cockpit leaves out of its rates and ETAs.
LIVE_WARMUP_BATCHES = 3


def format_remaining(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def format_duration(seconds: float) -> str:
    """'45s', '4m 12s', '1h 37m', '2d 3h': a duration for a person (the cockpit, summaries)."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def format_clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def log_warmup(todo: int) -> int:
    """The log lines' warm-up: a tenth of the batches to do, at least 1, at most 5."""
    return min(5, max(todo // 10, 1))


class WarmRate:
    """Seconds per batch of one phase from reports of (batches done, active seconds).

    The first report at or past ``warmup`` batches is the anchor; ``rate`` is the slope from
    it (None until a later report). Until the anchor, ``crude`` is the mean over the batches
    so far, warm-up included (None when it cannot be told), for a caller that needs a guess.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.rate: float | None = None
        self.crude: float | None = None
        self._anchor: tuple[int, float] | None = None   # (batches done, active seconds)

    def update(self, done: int, active_s: float) -> float | None:
        """Fold in one report; returns ``rate``."""
        if self._anchor is None:
            self.crude = active_s / done if done > 0 and active_s > 0 else None
            if done >= self.warmup:
                self._anchor = (done, active_s)
            return None
        n = done - self._anchor[0]
        if n > 0:
            self.rate = (active_s - self._anchor[1]) / n
        return self.rate


class PhaseEstimate:
    """Remaining-time estimate for one phase from (batches done, active seconds)."""

    def __init__(self, batch_count: int, start_batch: int = 0, warmup: int | None = None):
        self.batch_count = batch_count
        self.start_batch = start_batch
        self.warmup = warmup if warmup is not None else log_warmup(batch_count - start_batch)
        self._rate = WarmRate(self.warmup)

    def update(self, batches_done: int, active_s: float) -> float | None:
        """Seconds remaining, or None while warming up."""
        rate = self._rate.update(batches_done - self.start_batch, active_s)
        if rate is None:
            return None
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


class RunEstimate:
    """The remaining time of the phase in progress and of the whole run, in active seconds.

    Feed it the run (``run``), each phase as it starts (``start_phase``) and each batch
    (``batch_done``); ``remaining`` answers. It learns a ``WarmRate`` per phase ("trn",
    "val") and keeps it for that phase's later epochs. A phase not measured yet is a guess:
    its warm-up mean, or else the other phase's rate scaled by batch size; a phase whose
    batch count is unknown is guessed from the run's sample count and batch size."""

    def __init__(self, warmup: int = LIVE_WARMUP_BATCHES) -> None:
        self.warmup = max(0, warmup)
        self.run: RunStarted | None = None
        self._current: tuple[str, WarmRate] | None = None
        self._sec_per_batch: dict[str, float] = {}        # learned after warm-up, per phase
        self._crude_sec_per_batch: dict[str, float] = {}  # warm-up included, if nothing better
        self._batches_per_phase: dict[str, int] = {}
        self._samples_per_phase: dict[str, int] = {}

    def start_phase(self, phase: str, batch_count: int, sample_count: int | None = None) -> None:
        """A phase begins; ``sample_count`` None: first seen mid-phase (a file opened late),
        whose batch count counts only when none is known."""
        if sample_count is None:
            self._batches_per_phase.setdefault(phase, batch_count)
        else:
            self._batches_per_phase[phase] = batch_count
            self._samples_per_phase[phase] = sample_count
        self._current = (phase, WarmRate(self.warmup))

    def batch_done(self, done: int, active_s: float) -> None:
        """``done`` batches of the current phase finished (by this process) in ``active_s``."""
        if self._current is None:
            return
        phase, rate = self._current
        rate.update(done, active_s)
        if rate.rate is not None:
            self._sec_per_batch[phase] = rate.rate
        elif rate.crude is not None:
            self._crude_sec_per_batch[phase] = rate.crude

    def past_warmup(self, done: int) -> bool:
        return done > self.warmup

    # -- answers ---------------------------------------------------------------------------

    def remaining(self, phase: str | None, epoch: int | None, batches_done: int,
                  batch_count: int) -> tuple[float | None, float | None, bool]:
        """(phase seconds left, run seconds left, rough): None where there is no telling;
        rough when either rests on a guess."""
        if phase is None or epoch is None:
            return None, None, True
        rate, rough = self._rate(phase)
        if rate is None:
            return None, None, True
        phase_rem = max(0, batch_count - batches_done) * rate
        run_rem = phase_rem
        run = self.run
        last_epoch = run.epochs if run is not None else epoch
        every = (run.options or {}).get("val_every") if run is not None else None
        every = every if isinstance(every, int) and every > 0 else 1

        def validates(e: int) -> bool:            # --val-every: every N-th and the last
            return e % every == 0 or e == last_epoch

        later: list[str] = []
        if phase == "trn" and validates(epoch):
            later.append("val")
        for e in range(epoch + 1, last_epoch + 1):
            later += ["trn", "val"] if validates(e) else ["trn"]
        for ph in later:
            dur, r = self._phase_duration(ph)
            if dur is None:
                return phase_rem, None, True
            run_rem += dur
            rough = rough or r
        return phase_rem, run_rem, rough

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
        if self.run is not None:
            bs = self.run.options.get("batch_size") if self.run.options else None
            if isinstance(bs, int | float) and bs > 0:
                return float(bs)
        return None

    def _phase_batches(self, phase: str) -> tuple[int | None, bool]:
        if phase in self._batches_per_phase:
            return self._batches_per_phase[phase], False
        run = self.run
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
