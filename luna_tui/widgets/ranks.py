"""The ranks view: under torchrun, every rank's latest timings side by side (data wait, copy
to the device, forward, backward with the all-reduce, optimizer step, samples/s, its score
against the fastest rank and against its own best) and each rank's trend of its own time a
batch, with the straggler luna_core.run.straggler names and why."""

from __future__ import annotations

from rich.text import Text

from luna_core.run.straggler import window_of
from luna_tui.model import formatting as fmt
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.widgets.pane import MemoPane

PARTS = (("data_s", "data"), ("copy_s", "copy"), ("sync_s", "sync"), ("forward_s", "fwd"),
         ("backward_s", "bwd+AR"), ("step_s", "step"))
SPARK_POINTS = 40
HOST_WIDTH = 100          # the pane's width from which each rank's host is shown


def _ms(v) -> str:
    return f"{1000 * float(v or 0.0):.0f}"


def render_ranks(snap: RunSnapshot, width: int = 76) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if not snap.ranks:
        t.append("one process: no ranks to compare", style="dim")
        t.append("\nunder torchrun each rank's timings show here, sampled every few batches "
                 "and gathered to rank 0 on the CPU", style="dim")
        return t
    s = snap.straggler
    if s is not None:
        t.append("straggler ", style="bold red")
        t.append(s["reason"], style="bold red")
        if fmt.is_num(s.get("named_for_s")):
            t.append(f" (named {fmt.duration(float(s['named_for_s']))} ago)", style="dim")
    else:
        t.append("no straggler: ", style="bold")
        t.append("no rank waits for data, copies or computes its forward pass much longer "
                 "than the others")
    head = ["rank", "host", *(name for _k, name in PARTS), "ms", "smp/s", "score", "self"]
    rows = [head]
    for r in snap.ranks:
        step = window_of(r).total_s
        rows.append([str(r["rank"]), str(r.get("host") or "-"),
                     *(_ms(r.get(k)) for k, _n in PARTS), _ms(step),
                     f"{float(r.get('samples_per_s') or 0.0):,.0f}",
                     f"{float(r.get('score') or 0.0):.2f}",
                     f"{float(r.get('self_score') or 0.0):.2f}"])
    with_host = width >= HOST_WIDTH
    if not with_host:
        rows = [row[:1] + row[2:] for row in rows]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    used = sum(widths) + 2 * len(widths)
    room = max(4, min(SPARK_POINTS, width - used - 1))
    owns = sorted(h[1] for v in snap.rank_history.values() for h in v)
    # bars to twice the typical rank's time, or to the slowest's when it is further out
    top = max(owns[-1], 2 * owns[len(owns) // 2]) if owns else 1.0
    slow = str(s["rank"]) if s is not None else None
    t.append("\n")
    for i, row in enumerate(rows):
        line = "  ".join(c.ljust(w) if (k == 1 and with_host) else c.rjust(w)
                         for k, (c, w) in enumerate(zip(row, widths, strict=True)))
        style = "bold" if i == 0 else ("bold red" if row[0] == slow else "")
        t.append("\n" + line, style=style)
        if i == 0:
            t.append("  trend", style="bold")
            continue
        own = [h[1] for h in snap.rank_history.get(int(row[0]), ())][-room:]
        t.append("  ")
        t.append(fmt.spark(own, top=top), style="red" if row[0] == slow else "green")
    t.append("\n\nms: the step (the slowest rank's: the others wait in sync, DDP's buffer "
             "broadcast, and bwd+AR, its all-reduce); score: the fastest rank's own time "
             "(data + copy + fwd) over this one's; self: its best over now; trend: its own "
             "time a batch, oldest to newest", style="dim")
    return t


class RanksPane(MemoPane):
    DEFAULT_CSS = """
    RanksPane { height: 1fr; }
    """
    DRAW_WIDTH = 76

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Ranks · torchrun"

    def memo_key(self, width: int, snap: RunSnapshot) -> tuple:
        return (width, snap.ranks_version)

    def draw(self, width: int, snap: RunSnapshot) -> None:
        self.show_text(render_ranks(snap, width))
