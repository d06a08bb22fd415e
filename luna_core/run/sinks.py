"""Event sinks: console log lines and the run's JSONL event file (TensorBoard, which needs
torch, is luna_core.train.tensorboard)."""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from luna_core.run.events import (
    BatchDone,
    CheckpointSaved,
    Event,
    LogRecord,
    NonFiniteLoss,
    RunFinished,
    StatusChanged,
    event_to_dict,
)
from luna_core.run.fold import event_method


class ConsoleSink:
    """One plain line per log-worthy event (no progress bars or control characters), in the
    logging module's default-ish format: ``2026-11-26 17:50:01,123 INFO message``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._last_error = ""

    def __call__(self, event: Event) -> None:
        said = self._said(event)
        if said is None:
            return
        level, message = said
        stamp = datetime.datetime.fromtimestamp(event.t)
        line = f"{stamp:%Y-%m-%d %H:%M:%S},{stamp.microsecond // 1000:03d} {level} {message}\n"
        stream = self.stream or sys.stderr
        stream.write(line)
        stream.flush()

    @event_method
    def _said(self, event: Event) -> tuple[str, str] | None:
        """(level, message) of the line ``event`` is worth; None: no line."""
        return None

    @_said.register
    def _log(self, event: LogRecord) -> tuple[str, str] | None:
        if event.level in ("ERROR", "CRITICAL"):
            self._last_error = event.message
        return event.level, event.message

    @_said.register
    def _status(self, event: StatusChanged) -> tuple[str, str] | None:
        if event.detail == self._last_error:
            return None     # "status: failed (the error)": the error line just said it
        if event.detail:
            return "INFO", f"status: {event.state} ({event.detail})"
        return "INFO", f"status: {event.state}"

    @_said.register
    def _checkpoint(self, event: CheckpointSaved) -> tuple[str, str] | None:
        return "INFO", f"checkpoint ({event.reason}): {event.path}"


class JsonlSink:
    """The run's event file: one JSON object per line, flushed per line so that `luna-tui
    attach` sees a live run. Batch events are thinned to at most ``batch_hz`` per second
    (the last batch of a phase is always kept); every other event is written."""

    def __init__(self, path: str, batch_hz: float = 10.0, mode: str = "a") -> None:
        self.path = path
        self.min_gap = 1.0 / batch_hz if batch_hz > 0 else 0.0
        self._last_batch = 0.0
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.dropped_partial = drop_partial_last_line(path) if mode == "a" else 0
        self._file = open(path, mode, encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if not self._kept(event):
            return
        line = json.dumps(event_to_dict(event), default=_jsonable, allow_nan=True)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()
            self._written(event)

    @event_method
    def _kept(self, event: Event) -> bool:
        """Is ``event`` written? Every one is but thinned batches."""
        return True

    @_kept.register
    def _batch_kept(self, event: BatchDone) -> bool:
        now = time.monotonic()
        last_of_phase = event.batch_ndx + 1 == event.batch_count
        if now - self._last_batch < self.min_gap and not last_of_phase:
            return False
        self._last_batch = now
        return True

    @event_method
    def _written(self, event: Event) -> None:
        """After ``event``'s line is written and flushed (under the lock): nothing more for
        most events."""

    @_written.register(CheckpointSaved)
    @_written.register(NonFiniteLoss)
    def _sync(self, event: Event) -> None:
        """An event a reader must find even after a crash: on the disk now."""
        os.fsync(self._file.fileno())

    @_written.register
    def _last(self, event: RunFinished) -> None:
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def drop_partial_last_line(path: str) -> int:
    """Before a resumed run appends to its event file: cut an incomplete last line (the
    process before was killed in the middle of writing it), so that the new events do not
    glue onto it. Returns how many bytes were cut (0: the file ended with a newline)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return 0
            # the last newline: read back in blocks (a partial line is at most one event)
            end, block = size, 1 << 16
            keep = 0
            while end > 0:
                start = max(0, end - block)
                f.seek(start)
                k = f.read(end - start).rfind(b"\n")
                if k >= 0:
                    keep = start + k + 1
                    break
                end = start
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            return size - keep
    except FileNotFoundError:
        return 0


def _jsonable(value: Any) -> Any:
    """numpy/torch scalars as numbers; anything else unexpected as its text."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
