"""Helpers for testing the cockpit: frozen clock and system readings, scripted runs, and the
text on screen. Used by tests/test_cockpit*.py; handy for demos too."""

from __future__ import annotations

import html
import itertools
import math
import re
import time
from array import array
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from luna_core.run.command_table import CommandChannel
from luna_core.run.events import Event
from luna_tui.link.system_probe import GpuReading, SystemReading
from luna_tui.model.collector import EventCollector
from tests.fakerun import FakeTrainer

FROZEN_NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=timezone.utc)
GIB = 2**30

FROZEN_READING = SystemReading(
    cpu_percent=41.3,
    per_cpu=(12.0, 96.0, 88.0, 35.0, 7.0, 64.0, 100.0, 23.0),
    ram_used=int(48.2 * GIB), ram_total=int(125.7 * GIB),
    proc_rss=int(3.4 * GIB), children_rss=int(6.1 * GIB), children=4,
    gpus=(GpuReading(index=0, name="NVIDIA H100 80GB HBM3", util_percent=97.0,
                     mem_used=int(31.2 * GIB), mem_total=int(79.6 * GIB), temp_c=63.0,
                     power_w=312.0, power_limit_w=700.0),),
)
NO_GPU_READING = SystemReading(cpu_percent=12.5, per_cpu=(10.0, 15.0), ram_used=3 * GIB,
                               ram_total=16 * GIB, proc_rss=GIB, children_rss=0, children=0)


def frozen_clock(now: datetime = FROZEN_NOW) -> Callable[[], datetime]:
    return lambda: now


def fake_time(start: float = 1_741_089_600.0, step: float = 0.05) -> Callable[[], float]:
    """Event timestamps that advance a fixed step per event (2025-03-04 12:00 UTC on)."""
    counter = itertools.count()
    return lambda: start + step * next(counter)


def scripted_run(until: Callable[[Event], bool], *, collector: EventCollector | None = None,
                 commands: CommandChannel | None = None, **trainer_kwargs) -> EventCollector:
    """Fold a deterministic fake run into a collector, up to and including the first event
    for which ``until`` is true (no threads, no sleeping)."""
    collector = collector or EventCollector()
    trainer_kwargs.setdefault("time_fn", fake_time())
    trainer = FakeTrainer(commands=commands or CommandChannel(), **trainer_kwargs)
    for event in trainer.events():
        collector(event)
        if until(event):
            break
    return collector


def feed(collector: EventCollector, events: Iterable[Event]) -> EventCollector:
    collector.feed(events)
    return collector


_TEXT_RE = re.compile(
    r'<text [^>]*?x="([\d.]+)"[^>]*?clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>')


def svg_text(svg: str, cell_width: float = 12.2) -> str:
    """The characters of an exported Textual screenshot, one line per terminal row."""
    rows: dict[int, dict[int, str]] = {}
    for m in _TEXT_RE.finditer(svg):
        col = round(float(m.group(1)) / cell_width)
        row = rows.setdefault(int(m.group(2)), {})
        for i, ch in enumerate(html.unescape(m.group(3)).replace("\xa0", " ")):
            row[col + i] = ch
    lines = []
    for k in range(max(rows) + 1 if rows else 0):
        row = rows.get(k, {})
        lines.append("".join(row.get(i, " ") for i in range(max(row) + 1 if row else 0))
                     .rstrip())
    return "\n".join(lines)


def screen_text(app) -> str:
    """What the terminal shows now (via the app's own screenshot export)."""
    return svg_text(app.export_screenshot())


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.05) -> None:
    """Let the app run until ``predicate()`` holds (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(step)


async def on_screen(pilot, app, *needles: str, timeout: float = 60.0) -> str:
    """Wait until every needle is on the screen; returns the screen text."""
    text = ""

    def shown() -> bool:
        nonlocal text
        text = screen_text(app)
        return all(n in text for n in needles)

    try:
        await wait_for(pilot, shown, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{needles} not on screen:\n{text}") from None
    return text


def position(snap) -> tuple[int, int, int]:
    """Where a run is, as a tuple that only grows over the run: (epoch, 0 for training or 1
    for validation, batches done in the phase). ``batches_done`` alone restarts each phase."""
    return (snap.epoch or 0, 1 if snap.phase == "val" else 0, snap.batches_done)


def write_fake_examples(path: str, epoch: int, k: int = 8, counts: dict | None = None,
                        task: str = "nodule") -> str:
    """An examples file (luna_core.run.example_file) whose chunks are drawn, not read: lung at
    -850 HU with a soft-tissue sphere (40 HU) at the centre of each, its size by rank; ``k`` of
    each kind, or ``counts[kind]``. ``task`` "malignancy": its kinds (malignant graded benign,
    benign graded malignant, malignant graded best), every example a nodule."""
    from luna_core.run.example_file import KINDS, KINDS_OF_TASK, write_examples

    d, h, w = 32, 48, 48
    entries, chunks = [], []
    for kind, own_kind in zip(KINDS, KINDS_OF_TASK[task], strict=True):
        for rank in range(1, (counts or {}).get(kind, k) + 1):
            radius = 2 + (rank % 4)                       # voxels in-plane
            centre = (16, 24, 24)
            voxels = array("h", [-850]) * (d * h * w)
            for i in range(d):
                for r in range(h):
                    for c in range(w):
                        dz = (i - centre[0]) * 2.5 / 0.7
                        if (dz * dz + (r - centre[1]) ** 2 + (c - centre[2]) ** 2
                                <= radius * radius):
                            voxels[(i * h + r) * w + c] = 40
            nodule = kind != "false_alarms"           # malignancy: malignant
            p = {"misses": 0.01 * rank, "false_alarms": 0.99 - 0.01 * rank,  # by threshold
                 "best": 0.99 - 0.02 * rank}[kind]
            entries.append({
                "kind": own_kind, "rank": rank, "sample": len(entries), "series_uid":
                f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{100000 + len(entries):012d}",
                "center_xyz": [10.0 * rank, -20.0, -300.0 + rank], "center_irc": [60, 200, 250],
                "irc_in_chunk": list(centre), "vx_size_xyz": [0.7, 0.7, 2.5],
                "diameter_mm": 2 * radius * 0.7 if nodule or task == "malignancy" else 0.0,
                "is_nodule": nodule,
                "probability": p, "loss": round(-math.log(p if nodule else 1 - p), 4),
                "chunk": len(chunks)})
            chunks.append(voxels.tobytes())
    write_examples(path, epoch, (d, h, w), entries, chunks, task)
    return path


def write_fake_seg_examples(path: str, epoch: int, k: int = 4, size: int = 96) -> str:
    """A seg examples file (task "seg") whose slices are drawn: lung at -850 HU, a soft-tissue
    disc (the label) whose left half the model called (found), its right half missed, and a
    falsely marked square beside it; ``k`` of each kind."""
    from luna_core.run.example_file import SEG_KINDS, write_examples

    entries, chunks = [], []
    for kind in SEG_KINDS:
        for rank in range(1, k + 1):
            radius, cr, cc = 6 + rank, size // 2, size // 2
            hu, label, called = (array("h", [v]) * (size * size) for v in (-850, 0, 0))
            for r in range(size):
                for c in range(size):
                    at = r * size + c
                    if (r - cr) ** 2 + (c - cc) ** 2 <= radius * radius:
                        hu[at], label[at] = 40, 1
                        called[at] = 1 if c < cc else 0
                    if cr - 20 <= r < cr - 12 and cc + 14 <= c < cc + 22:
                        called[at] = 1
            found = sum(1 for a, b in zip(label, called, strict=True) if a and b)
            missed = sum(label) - found
            false = sum(1 for a, b in zip(label, called, strict=True) if b and not a)
            entries.append({
                "kind": kind, "rank": rank, "sample": len(entries),
                "series_uid": f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{200000 + len(entries):012d}",
                "center_xyz": [0.0, 0.0, 0.0], "center_irc": [30 + rank, cr, cc + radius // 2],
                "irc_in_chunk": [0, cr, cc + radius // 2], "vx_size_xyz": [0.7, 0.7, 2.5],
                "diameter_mm": 0.0, "is_nodule": True, "probability": found / (found + missed),
                "loss": 1.5, "chunk": len(chunks), "pixels": [found, missed, false]})
            chunks.append(hu.tobytes() + label.tobytes() + called.tobytes())
    write_examples(path, epoch, (3, size, size), entries, chunks, task="seg")
    return path
