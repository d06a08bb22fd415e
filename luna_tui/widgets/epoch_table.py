"""Epochs pane (view 7): every epoch of the run as a row, newest first: the training and
validation loss, the % of nodules correct in each, and the validation's CPM; the best value
of each column in bold, and the best epochs under the table. The per-class table shows the
latest epoch only and the trends draw the same numbers: this one reads them off."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from luna_core.run.metric_catalog import CORRECT_POS, CPM, LOSS, Metric
from luna_tui.model.snapshot import EpochPoint, RunSnapshot
from luna_tui.widgets.pane import MemoPane

#: The columns: (phase, the catalog's metric, the EpochPoint field that holds it).
COLUMNS: tuple[tuple[str, Metric, str], ...] = (
    ("trn", LOSS, "loss_all"),
    ("val", LOSS, "loss_all"),
    ("trn", CORRECT_POS, "correct_pos"),
    ("val", CORRECT_POS, "correct_pos"),
    ("val", CPM, "cpm"),
)


#: --task seg: the "% of nodules correct" column holds the % of nodule pixels found (recall).
SEG_NAMES = {CORRECT_POS.key: ("nodule pixels found", "pixels %")}


def _names(snap: RunSnapshot, m: Metric) -> tuple[str, str]:
    """(name, short name) of a column's metric for this run's task."""
    if snap.task == "seg" and m.key in SEG_NAMES:
        return SEG_NAMES[m.key]
    return m.name, m.short


def _points(snap: RunSnapshot, phase: str) -> dict[int, EpochPoint]:
    return {p.epoch: p for p in snap.history.get(phase, ())}


def render_epoch_table(snap: RunSnapshot, width: int = 76) -> Group | Text:
    by_phase = {phase: _points(snap, phase) for phase in ("trn", "val")}
    epochs = sorted(set(by_phase["trn"]) | set(by_phase["val"]), reverse=True)
    if not epochs:
        return Text("no epoch finished yet — a row per epoch appears after its training",
                    style="dim")
    compact = width < 80
    columns = [(phase, m, name) for phase, m, name in COLUMNS
               if any(getattr(p, name) is not None for p in by_phase[phase].values())]
    best = {(phase, m.key): m.best((e, getattr(p, name)) for e, p in by_phase[phase].items())
            for phase, m, name in columns if m.better is not None}
    table = Table(box=None, pad_edge=False, padding=(0, 1), expand=False,
                  header_style="bold", show_edge=False)
    table.add_column("epoch", justify="right", no_wrap=True)
    for phase, m, _name in columns:
        name, short = _names(snap, m)
        table.add_column(f"{phase} {short if compact else name}", justify="right",
                         no_wrap=True)
    for epoch in epochs:
        cells = [f"E{epoch}"]
        for phase, m, name in columns:
            point = by_phase[phase].get(epoch)
            value = None if point is None else getattr(point, name)
            top = best.get((phase, m.key))
            cell = Text(m.text(value, missing="—"))
            if top is not None and top[0] == epoch:
                cell.stylize("bold")
            cells.append(cell)
        table.add_row(*cells)
    said = [f"{phase} {_names(snap, m)[0]} E{top[0]} {m.text(top[1])}"
            for (phase, m, _name) in columns if phase == "val"
            for top in [best.get((phase, m.key))] if top is not None]
    if not said:
        return Group(table)
    return Group(table, Text("best: " + " · ".join(said), style="dim"))


class EpochTablePane(MemoPane):
    DEFAULT_CSS = """
    EpochTablePane { height: auto; }
    """
    DRAW_WIDTH = 76

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Epochs · newest first"

    def memo_key(self, width: int, snap: RunSnapshot) -> tuple:
        return (width, snap.metrics_version)

    def draw(self, width: int, snap: RunSnapshot) -> None:
        self.update(render_epoch_table(snap, width))
