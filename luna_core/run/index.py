"""A run's index, ``RUN_DIR/index.json``: the events that say what a run is and how far it got
(run_started, phase_started, epoch_metrics without its score's curves, status, checkpoint,
nonfinite, optimizer_changed, examples, run_finished) — everything in the event file but the
batch, log and rank-timing lines, a few lines an epoch. `luna-tui runs` and the runs screen
read it instead of the whole event file (which holds up to 10 batch events a second: 100,000 lines
in a few hours), so a runs folder of 500 runs lists in well under a second.

The index is rewritten atomically, at most twice a second (a run's start, a validation, a
checkpoint, examples and its end at once, right after the event file got them); a run killed
in between lacks its last events in the index (its state is then told from its process, as
for the event file). An index of a shape this version does not expect is not used, and
neither is one of a run from before the index, or a run folder copied without it: the run is
read from its event file (and indexed when it is resumed).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write
from luna_core.run import events as ev
from luna_core.run.eventfile import EVENT_FILE_NAME, read_events, run_event_file

INDEX_FILE = "index.json"
FORMAT = 1
SKIPPED = (ev.BatchDone, ev.LogRecord, ev.RankTimings)

log = logging.getLogger(__name__)


def indexed(event: ev.Event) -> dict | None:
    """The event as the index keeps it (None: not kept)."""
    if isinstance(event, SKIPPED):
        return None
    data = ev.event_to_dict(event)
    if isinstance(event, ev.EpochMetrics) and data.get("score"):
        data["score"] = {k: v for k, v in data["score"].items()
                         if not isinstance(v, list)}      # numbers only: no curves
    return data


def index_path(run_dir: str) -> str:
    return os.path.join(run_dir, INDEX_FILE)


def read_index(run_dir: str) -> list[ev.Event] | None:
    """The indexed events, or None when the run has no index this version can use: none, not
    JSON, or of a shape it does not expect (then its event file is read instead; an index
    never hides a run)."""
    try:
        with open(index_path(run_dir), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    version, items = data.get("format"), data.get("events")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT:
        return None
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            return None
        if item["kind"] not in ev.EVENT_TYPES:
            continue                      # a newer kind of event: not ours to list
        try:
            out.append(ev.event_from_dict(item))
        except (TypeError, ValueError, KeyError):
            return None
    return out


def read_run_events(run_dir: str) -> list[ev.Event]:
    """What listing a run needs: its index, else its whole event file."""
    events = read_index(run_dir)
    if events is None:
        events = read_events(run_event_file(run_dir))
    return events


class IndexSink:
    """Keeps ``RUN_DIR/index.json`` (rank 0, beside the event-file sink).

    Written at most every ``min_interval`` seconds: an event that comes sooner marks the index
    dirty and a timer writes it when the interval is up (a pause toggled 1,000 times a second
    costs two writes a second, not 1,000 fsyncs), so the file is at most ``min_interval``
    behind the events. The events a reader waits on (a run's start, a validation, a
    checkpoint, examples, the end) are written at once, and ``close`` writes what is left.
    The index is a side output: a failed write (full disk, folder gone) is logged once and
    training goes on; the next write tries again."""

    #: written at once: what `runs` and the queue act on
    AT_ONCE = (ev.RunStarted, ev.EpochMetrics, ev.CheckpointSaved, ev.ExamplesSaved,
               ev.RunFinished)

    def __init__(self, run_dir: str, *, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 timer: Callable[[float, Callable[[], None]], Any] | None = None) -> None:
        self.path = index_path(run_dir)
        self.items: list[dict] = []
        self.min_interval = min_interval
        self.clock = clock
        self._timer_factory = timer or _daemon_timer
        self._lock = threading.Lock()       # the items, the flags and the file
        self._dirty = False
        self._timer = None
        self._last_write: float | None = None
        self._failing = False               # a write failed and was logged; quiet until one works
        self._closed = False
        before = read_index(run_dir)
        event_file = os.path.join(run_dir, EVENT_FILE_NAME)
        if before is None and os.path.exists(event_file):
            try:
                before = read_events(event_file)        # resumed, unindexed
            except LunaInputError as exc:
                # an index of what follows only would hide the run's start: write none (a
                # reader reads the event file, and says what is wrong with it)
                log.warning("%s: not indexed (%s)", self.path, exc)
                self._closed = True
        for event in before or []:
            item = indexed(event)
            if item is not None:
                self.items.append(item)

    def __call__(self, event: ev.Event) -> None:
        item = indexed(event)
        if item is None or self._closed:
            return
        with self._lock:
            self.items.append(item)
            self._dirty = True
            now = self.clock()
            due = (isinstance(event, self.AT_ONCE) or self._last_write is None
                   or now - self._last_write >= self.min_interval)
            if not due:
                if self._timer is None:
                    wait = max(0.0, self.min_interval - (now - self._last_write))
                    self._timer = self._timer_factory(wait, self.flush)
                return
        self.flush()

    def flush(self) -> None:
        """Write the index now if an event has come since it was last written."""
        with self._lock:
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()            # a no-op from the timer's own thread
            if not self._dirty:
                return
            problem = self._write()
            was_failing, self._failing = self._failing, problem is not None
        # logged outside the lock: the log reaches the event bus, whose lock the training
        # thread may hold while it waits for this one
        if problem is not None and not was_failing:
            log.error("%s: cannot write %s (%s); training goes on without it",
                      ev.SIDE_OUTPUT_FAILED, self.path, problem)
        elif problem is None and was_failing:
            log.info("%s: written again", self.path)

    def _write(self) -> str | None:
        self._last_write = self.clock()
        try:
            with atomic_write(self.path, text=True) as f:
                json.dump({"format": FORMAT, "events": self.items}, f, allow_nan=True,
                          default=_jsonable)
        except OSError as exc:
            return exc.strerror or str(exc)
        except (TypeError, ValueError) as exc:       # an event that is not JSON: a bug
            return f"{type(exc).__name__}: {exc}"
        self._dirty = False
        return None

    def close(self) -> None:
        """Write what is not written yet; later events are not indexed."""
        self.flush()
        self._closed = True


def _daemon_timer(delay: float, fn: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, fn)
    timer.daemon = True                 # never holds up the end of the process
    timer.start()
    return timer


def _jsonable(value: Any) -> Any:
    """numpy/torch scalars as numbers, anything else unexpected as its text."""
    return value.item() if hasattr(value, "item") else str(value)
