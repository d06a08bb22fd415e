"""Bottleneck pane: the share of recent batch time spent waiting for data vs computing."""

from __future__ import annotations

from rich.text import Text

from luna_tui.model.snapshot import Bottleneck, RunSnapshot
from luna_tui.widgets.pane import MemoPane

VERDICT_STYLE = {
    "loader-bound": "bold black on yellow",
    "partly loader-bound": "bold yellow",
    "compute-bound": "bold green",
}
VERDICT_HINT = {
    "loader-bound": "the loop mostly waits for batches: more --num-workers or faster storage",
    "partly loader-bound": "the loader sometimes keeps the loop waiting",
    "compute-bound": "the loader keeps up; the model's compute sets the pace",
}


def render_bottleneck(b: Bottleneck | None, width: int = 40) -> Text:
    if b is None or b.batches == 0:
        return Text("waiting for batches…", style="dim")
    t = Text(no_wrap=False)
    data_pct = 100.0 * b.data_share
    label_l = f"data {data_pct:3.0f} % "
    label_r = f" {100.0 - data_pct:3.0f} % compute"
    room = max(4, width - len(label_l) - len(label_r))
    n_data = int(round(b.data_share * room))
    t.append(label_l, style="bold")
    t.append("█" * n_data, style="yellow")
    t.append("█" * (room - n_data), style="blue")
    t.append(label_r, style="bold")
    t.append("\n")
    t.append(f" {b.verdict} ", style=VERDICT_STYLE.get(b.verdict, "bold"))
    t.append(f" {b.data_ms:.0f} ms data + {b.compute_ms:.0f} ms compute per batch, "
             f"last {b.batches} {b.phase} batches")
    t.append("\n")
    t.append(VERDICT_HINT.get(b.verdict, ""), style="dim")
    return t


class BottleneckPane(MemoPane):
    DEFAULT_CSS = """
    BottleneckPane { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Bottleneck"

    def memo_key(self, width: int, snap: RunSnapshot) -> tuple:
        return (width, snap.bottleneck)

    def draw(self, width: int, snap: RunSnapshot) -> None:
        self.show_text(render_bottleneck(snap.bottleneck, width))
