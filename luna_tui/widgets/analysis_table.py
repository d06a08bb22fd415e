"""An analysis' results (``luna-tui analyze``, the book's ch. 14) in the per-class pane's
place: the challenge's detection CPM over every annotated nodule beside the candidate list's,
the nodules found and the false positives per scan, and the book's table."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from luna_core.run.metric_catalog import DETECTION_CPM, FP_PER_SCAN, LIST_CPM, NODULES_FOUND
from luna_tui.model import formatting as fmt
from luna_tui.model.snapshot import RunSnapshot

ROWS = ("non-nodule", "benign", "malignant")
COLUMNS = (("complete miss", "miss"), ("filtered out", "filtered"),
           ("pred. benign", "benign"), ("pred. malignant", "malignant"))


def render_analysis_table(snap: RunSnapshot, width: int = 76) -> Group | Text:
    pm = snap.metrics.get("val")
    if pm is None:
        done = snap.batches_done if snap.phase == "val" else 0
        return Text(f"analysing: {done} of {snap.batch_count or '?'} series done — the "
                    "scores come when every series is", style="dim")
    compact = width < 64
    lines: list = []
    for metric, what in ((DETECTION_CPM, "segmentation + classifier"),
                         (LIST_CPM, "candidates.csv + classifier")):
        value = pm.get(metric.key)
        if value is None:
            continue
        line = Text(f"{metric.short if compact else metric.name} ", style="bold")
        line.append(fmt.cpm(value, *(pm.get(k) for k in metric.interval)),
                    style="bold" if metric is DETECTION_CPM else "")
        if not compact:
            line.append(f"  ({what})", style="dim")
        lines.append(line)
    summary = (pm.score or {}).get("analysis") or {}
    table = summary.get("table")
    found = pm.get(NODULES_FOUND.key)
    said = f"{summary.get('series', '?')} series"
    if table is not None:
        nodules = sum(sum(row) for row in table[1:])
        said += (f" · nodules found {fmt.count(pm.pos_correct)} of {fmt.count(nodules)}"
                 f" ({fmt.pct(found)})")
    if pm.get(FP_PER_SCAN.key) is not None:
        said += f" · {FP_PER_SCAN.number(pm.get(FP_PER_SCAN.key))} FP per scan"
    lines.append(Text(said))
    if table is None:
        lines.append(Text("no annotations_with_malignancy.csv: no book's table", style="dim"))
        return Group(*lines)
    grid = Table(box=None, pad_edge=False, padding=(0, 1), expand=False,
                 header_style="bold", show_edge=False)
    grid.add_column("", no_wrap=True)
    for long, short in COLUMNS:
        grid.add_column(short if compact else long, justify="right", no_wrap=True)
    for r, name in enumerate(ROWS):
        cells = ["" if (r == 0 and c == 0) else fmt.count(table[r][c]) for c in range(4)]
        grid.add_row(name, *cells, style="bold" if r else "")
    return Group(*lines, grid)
