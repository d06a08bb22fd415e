"""A run's index, ``RUN_DIR/index.json``: the events that say what a run is and how far it got
(run_started, phase_started, epoch_metrics without its score's curves, status, checkpoint,
nonfinite, optimizer_changed, examples, run_finished) — everything in the event file but the
batch and log lines, a few lines an epoch. `luna-tui runs` and the runs screen read it
instead of the whole event file (which holds up to 10 batch events a second: 100,000 lines
in a few hours), so a runs folder of 500 runs lists in well under a second.

The index is rewritten atomically after each event it keeps, right after the event file got
it; a run killed between the two writes lacks its last event in the index (its state is
then told from its process, as for the event file). A run from before the index, or a run
folder copied without it, is read from its event file (and indexed when it is resumed).
"""

from __future__ import annotations

import json
import os

from luna_core.fsutil import atomic_write
from luna_core.run import events as ev
from luna_core.run.eventfile import EVENT_FILE_NAME, read_events, run_event_file

INDEX_FILE = "index.json"
FORMAT = 1
SKIPPED = (ev.BatchDone, ev.LogRecord)


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
    """The indexed events, or None when the run has no readable index."""
    try:
        with open(index_path(run_dir), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format", 0) > FORMAT:
        return None
    out = []
    for item in data.get("events", []):
        if item.get("kind") in ev.EVENT_TYPES:
            try:
                out.append(ev.event_from_dict(item))
            except TypeError:
                return None
    return out


def read_run_events(run_dir: str) -> list[ev.Event]:
    """What listing a run needs: its index, else its whole event file."""
    events = read_index(run_dir)
    if events is None:
        events = read_events(run_event_file(run_dir))
    return events


class IndexSink:
    """Keeps ``RUN_DIR/index.json`` (rank 0, beside the event-file sink)."""

    def __init__(self, run_dir: str) -> None:
        self.path = index_path(run_dir)
        self.items: list[dict] = []
        before = read_index(run_dir)
        if before is None and os.path.exists(os.path.join(run_dir, EVENT_FILE_NAME)):
            before = read_events(os.path.join(run_dir, EVENT_FILE_NAME))  # resumed, unindexed
        for event in before or []:
            item = indexed(event)
            if item is not None:
                self.items.append(item)

    def __call__(self, event: ev.Event) -> None:
        item = indexed(event)
        if item is None:
            return
        self.items.append(item)
        with atomic_write(self.path, text=True) as f:
            json.dump({"format": FORMAT, "events": self.items}, f, allow_nan=True)
