"""System pane: CPU, RAM, the training process, and GPUs (NVML) — or a plain "no GPU", or,
for an attached run on another host, that nothing is visible from here. Under torchrun, the
job's ranks from the run's own timings (luna_core.run.straggler): a row each where the pane
is wide enough (``RANK_ROWS_WIDTH``), else one line naming the slowest."""

from __future__ import annotations

from rich.text import Text

from luna_core.run.straggler import window_of
from luna_tui.link.system_probe import SystemReading
from luna_tui.model import formatting as fmt
from luna_tui.widgets.pane import MemoPane


def _level(value: float | None, warn: float = 75.0, high: float = 90.0) -> str:
    if not fmt.is_num(value):
        return ""
    return "bold red" if value >= high else ("yellow" if value >= warn else "")


def _append_parts(t: Text, parts: list[tuple[str, str]], width: int, indent: str) -> None:
    """Styled parts on new lines after ``indent``, " · " between them, broken only between
    parts (a value never loses its unit)."""
    used = width
    for i, (part, style) in enumerate(parts):
        if used + 3 + len(part) > width:
            t.append("\n" + indent)
            used = len(indent)
        elif i:
            t.append(" · ")
            used += 3
        t.append(part, style=style)
        used += len(part)


#: The pane's inner width from which it shows a row per rank (a 120-column terminal's).
RANK_ROWS_WIDTH = 110
RANK_COLUMNS = ("rank", "host", "device", "util", "memory", "data wait", "step", "score")


def rank_line(ranks, straggler) -> Text:
    """'slowest: rank 3 (data wait)' / 'ranks: 8, none holds the job back (score ≥ 0.91)'."""
    t = Text()
    if straggler is not None:
        t.append("slowest: ", style="bold")
        t.append(f"rank {straggler['rank']} ({straggler['part']})", style="bold red")
        return t
    low = min((float(r.get("score") or 0.0) for r in ranks), default=1.0)
    t.append("ranks: ", style="bold")
    t.append(f"{len(ranks)}, none holds the job back (score ≥ {low:.2f})")
    return t


def rank_rows(ranks, straggler, width: int) -> Text:
    """A row per rank: where it runs, its GPU, its data wait and step time, its score."""
    slow = straggler["rank"] if straggler is not None else None
    rows = [RANK_COLUMNS]
    for r in ranks:
        util = r.get("util_percent")
        mem = ((f"{fmt.gib(r['mem_used'])}/{fmt.gib(r['mem_total'])} GiB")
               if r.get("mem_used") is not None and r.get("mem_total") else "-")
        step = window_of(r).total_s
        share = float(r.get("data_s") or 0.0) / step if step > 0 else 0.0
        rows.append((str(r["rank"]), str(r.get("host") or "-"), str(r.get("device") or "-"),
                     f"{util:.0f} %" if fmt.is_num(util) else "-", mem,
                     f"{1000 * float(r.get('data_s') or 0.0):.0f} ms ({100 * share:.0f} %)",
                     f"{1000 * step:.0f} ms", f"{float(r.get('score') or 0.0):.2f}"))
    widths = [max(len(row[k]) for row in rows) for k in range(len(RANK_COLUMNS))]
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, row in enumerate(rows):
        line = "  ".join(cell.rjust(w) if k in (0, 3, 4, 5, 6, 7) else cell.ljust(w)
                         for k, (cell, w) in enumerate(zip(row, widths, strict=True)))
        if i:
            t.append("\n")
        style = "bold" if i == 0 else ("bold red" if row[0] == str(slow) else "")
        t.append(line[:width], style=style)
        if i and row[0] == str(slow):
            t.append(f"  ◀ {straggler['part']}", style="bold red")
    return t


def render_system(r: SystemReading, width: int = 40, ranks=(), straggler=None) -> Text:
    t = _render_host(r, width)
    if ranks:
        t.append("\n")
        if width >= RANK_ROWS_WIDTH:
            t.append_text(rank_rows(ranks, straggler, width))
        else:
            t.append_text(rank_line(ranks, straggler))
    return t


def _render_host(r: SystemReading, width: int) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if r.note is not None:
        t.append("System readings ", style="bold")
        t.append(r.note, style="dim")
        return t
    t.append("CPU  ", style="bold")
    t.append(f"{r.cpu_percent:5.1f} %" if fmt.is_num(r.cpu_percent) else "    ?",
             style=_level(r.cpu_percent))
    if r.per_cpu:
        room = width - 14
        cores = r.per_cpu
        if 0 < room < len(cores):
            # too many cores for the width: show the busiest ones, highest first
            cores = tuple(sorted(cores, reverse=True)[:room])
        if room > 0:
            t.append("  ")
            t.append(fmt.spark(cores), style="green")
    t.append(f"\nRAM  {fmt.gib(r.ram_used)} of {fmt.gib(r.ram_total)} GiB", style="")
    if r.ram_percent is not None:
        t.append(f" ({r.ram_percent:.0f} %)", style=_level(r.ram_percent))
    t.append("\nproc ", style="bold")
    if r.proc_note is not None:
        t.append(r.proc_note, style="dim")
    else:
        if r.proc_pid is not None:
            t.append(f"pid {r.proc_pid} ")
        t.append(f"{fmt.size(r.proc_rss)} RSS")
        if r.children:
            t.append(f" + {r.children} children {fmt.size(r.children_rss)}")
        if r.proc_pid is not None and fmt.is_num(r.proc_cpu_percent):
            t.append(f" · {r.proc_cpu_percent:.0f} % CPU")
    if not r.gpus:
        t.append("\nGPU  ", style="bold")
        t.append(r.gpu_note or "no GPU", style="dim")
        return t
    for g in r.gpus:
        t.append(f"\nGPU{g.index} ", style="bold")
        t.append(g.name, style="dim")
        mem_pct = (100.0 * g.mem_used / g.mem_total
                   if g.mem_used is not None and g.mem_total else None)
        power = "? W"
        if fmt.is_num(g.power_w):
            limit = f"/{g.power_limit_w:.0f}" if fmt.is_num(g.power_limit_w) else ""
            power = f"{g.power_w:.0f}{limit} W"
        parts = [
            (f"{g.util_percent:.0f} % util" if fmt.is_num(g.util_percent) else "? % util",
             ""),
            (f"{fmt.gib(g.mem_used)}/{fmt.gib(g.mem_total)} GiB", _level(mem_pct)),
            (f"{g.temp_c:.0f} °C" if fmt.is_num(g.temp_c) else "? °C",
             _level(g.temp_c, 80, 87)),
            (power, ""),
        ]
        _append_parts(t, parts, width, indent="     ")
    return t


class SystemPane(MemoPane):
    DEFAULT_CSS = """
    SystemPane { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "System"
        self._ranks: tuple = ((), None)

    def follow(self, snap, ui, now) -> None:
        """The run's ranks (torchrun), beside the readings the pane is shown."""
        ranks = (snap.ranks, snap.straggler)
        if ranks != self._ranks:
            self._ranks = ranks
            self.forget()

    def draw(self, width: int, reading: SystemReading) -> None:
        self.show_text(render_system(reading, width, *self._ranks))
