"""Reading a run's event file (``RUN_DIR/events.jsonl``), whole or as it grows.

Format (version 1): UTF-8, one JSON object per line, each with ``"v"`` (format version),
``"kind"`` (run_started, phase_started, batch_done, epoch_metrics, status, checkpoint,
nonfinite, log, run_finished, optimizer_changed, examples, stop_after_epoch, rank_timings)
and ``"t"`` (Unix time), plus the fields of that event's dataclass in
luna_core/run/events.py. A resumed run appends a new ``run_started`` (with
``resumed_from``) to the same file. The last line may be incomplete
while the run writes it; readers keep it until its newline arrives. Unknown kinds and fields
are skipped, so readers survive newer writers of the same major version; a line that is not
a JSON object with a "kind", or an event of a known kind with a field missing or of the wrong
type, is a LunaInputError naming the file and the line.
"""

from __future__ import annotations

import json
import os

from luna_core.errors import LunaInputError
from luna_core.run.events import EVENT_FORMAT_VERSION, EVENT_TYPES, Event, event_from_dict

EVENT_FILE_NAME = "events.jsonl"


def decode_line(line: bytes | str, path: str = "", line_no: int | None = None) -> Event | None:
    """One line -> Event; None for blank lines and kinds this version does not know."""
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LunaInputError(f"not a JSON event line ({exc.msg})", path, line_no) from exc
    except UnicodeDecodeError as exc:        # bytes json cannot decode: not text
        raise LunaInputError(f"not a text event line ({exc.reason})", path, line_no) from exc
    if not isinstance(data, dict):
        raise LunaInputError(f"not an event (a JSON {type(data).__name__}, not an object)",
                             path, line_no)
    kind, version = data.get("kind"), data.get("v", 1)
    if not isinstance(kind, str):
        raise LunaInputError("not an event (no \"kind\" string)", path, line_no)
    if not isinstance(version, int) or isinstance(version, bool):
        raise LunaInputError(f"not an event (its \"v\" is {version!r:.20}, not a version "
                             "number)", path, line_no)
    if kind not in EVENT_TYPES:
        return None
    if version > EVENT_FORMAT_VERSION:
        raise LunaInputError(f"event format version {version} is newer than this "
                             f"luna-tui reads ({EVENT_FORMAT_VERSION})", path, line_no)
    try:
        return event_from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise LunaInputError(f"bad {kind} event ({exc})", path, line_no) from exc


class EventFileFollower:
    """Returns the events appended since the last ``poll``; holds back a partial last line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.line_no = 0
        self._partial = b""

    def poll(self, errors: list[str] | None = None) -> list[Event]:
        """New complete events. A line that is not an event raises LunaInputError, or, when
        ``errors`` is given, is reported there and skipped (a live reader reads on)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a newline
        events = []
        for line in lines:
            self.line_no += 1
            try:
                event = decode_line(line, self.path, self.line_no)
            except LunaInputError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
                continue
            if event is not None:
                events.append(event)
        return events


def require_event_file(path: str) -> str:
    if not os.path.isfile(path):
        raise LunaInputError("no event file here: not a luna-tui run directory", path)
    return path


def run_event_file(run_dir: str) -> str:
    """The event file of the run directory ``run_dir``. LunaInputError when there is no such
    directory, or it has no event file (then it is not a run directory)."""
    if not os.path.isdir(run_dir):
        raise LunaInputError("no such run directory", run_dir)
    return require_event_file(os.path.join(run_dir, EVENT_FILE_NAME))


def read_events(path: str) -> list[Event]:
    """Every complete event in the file (a partial last line is left out)."""
    return EventFileFollower(require_event_file(path)).poll()
