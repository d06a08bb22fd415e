"""Small text formatters shared by the panes (pure functions, no Textual)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from luna_core.run.compare import cpm_text
from luna_core.run.estimate import format_duration

BAR_FULL = "━"
BAR_HALF = "╸"
BAR_EMPTY = "─"


def is_num(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def duration(seconds: float | None) -> str:
    """'45s', '4m 12s', '1h 37m', '2d 3h' ('?' when unknown)."""
    return format_duration(seconds) if is_num(seconds) else "?"


def clock_time(now: datetime, seconds: float | None) -> str:
    """The wall-clock time ``seconds`` from ``now``: '14:32', 'Tue 03:10' past today."""
    if not is_num(seconds):
        return "?"
    try:
        when = now + timedelta(seconds=seconds)
    except OverflowError:
        return "?"
    if when.date() == now.date():
        return when.strftime("%H:%M")
    if (when.date() - now.date()).days < 7:
        return when.strftime("%a %H:%M")
    return when.strftime("%Y-%m-%d")


def gib(n: int | None, digits: int = 1) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.{digits}f}"


def size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def pct(value: float | None, digits: int = 1) -> str:
    return f"{value:.{digits}f} %" if is_num(value) else "—"


def num(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if is_num(value) else "—"


def bar(fraction: float, width: int) -> str:
    """A thin progress bar string of exactly ``width`` cells."""
    width = max(1, width)
    fraction = min(1.0, max(0.0, fraction if is_num(fraction) else 0.0))
    halves = int(round(fraction * width * 2))
    full, half = divmod(halves, 2)
    text = BAR_FULL * full + (BAR_HALF if half else "")
    return text + BAR_EMPTY * (width - len(text))


SPARK = "▁▂▃▄▅▆▇█"


def spark(values: list[float] | tuple[float, ...], top: float = 100.0) -> str:
    out = []
    for v in values:
        v = min(top, max(0.0, v if is_num(v) else 0.0))
        out.append(SPARK[min(len(SPARK) - 1, int(v / top * len(SPARK)))])
    return "".join(out)


def short_path(path: str, run_dir: str) -> str:
    """A checkpoint's path from its run directory on ('checkpoints/e001-b000120.pt')."""
    if run_dir and path.startswith(run_dir.rstrip("/") + "/"):
        return path[len(run_dir.rstrip("/")) + 1:]
    return path if len(path) <= 60 else "…" + path[-59:]


def wrap_parts(parts: list[str], width: int, sep: str = " · ", first: int = 0) -> list[str]:
    """``parts`` joined by ``sep`` into lines of at most ``width`` characters, broken only
    between parts (a value is never split from its label); a part wider than ``width`` gets
    a line of its own. ``first``: characters already used on the first line."""
    lines: list[str] = []
    line, used = "", first
    for part in parts:
        if line and used + len(sep) + len(part) > width:
            lines.append(line)
            line, used = "", 0
        if line:
            line += sep
            used += len(sep)
        line += part
        used += len(part)
    if line or not lines:
        lines.append(line)
    return lines


def cpm(value: float | None, low: float | None = None, high: float | None = None) -> str:
    """'0.612 [0.55–0.67]': LUNA16's CPM with its 95 % interval ('-' when there is none)."""
    return cpm_text(value if is_num(value) else None, low, high)
