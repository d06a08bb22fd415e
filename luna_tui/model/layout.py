"""Where each pane goes, for a terminal size and a view: pure arithmetic, no Textual.

The cockpit has six views (``1`` overview, ``2`` trends, ``3`` log, ``4`` system, ``5``
diagnostics, ``6`` examples) and a zoom
(``z``: the focused pane alone). Every view fits the screen without scrolling: a pane gets its
natural height or, in the overview, collapses to a one-line summary when it does not fit; a
pane is never given zero rows. A trend plot is only drawn with at least ``MIN_PLOT_ROWS`` rows
of plotting area: the trends pane collapses otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OVERVIEW, TRENDS, LOG, SYSTEM = "overview", "trends", "log", "system"
DIAGNOSTICS, EXAMPLES = "diagnostics", "examples"
VIEWS = {"1": OVERVIEW, "2": TRENDS, "3": LOG, "4": SYSTEM, "5": DIAGNOSTICS, "6": EXAMPLES}
PANES = ("progress", "classes", "system", "bottleneck", "trends", "log")   # the overview's
ALL_PANES = (*PANES, DIAGNOSTICS, EXAMPLES)    # these two have their own views only

FOOTER_ROWS = 1
STATUS_ROWS = 1            # the one-line status above views 2-4 and a zoomed pane
BORDER_ROWS = 2
COLLAPSED_ROWS = 1
PLOTS = 3
#: Rows of a plot widget that are not plotting area: its title, the x tick labels, the x label.
PLOT_CHROME_ROWS = 3
MIN_PLOT_ROWS = 10
MIN_LOG_ROWS = 3 + BORDER_ROWS
TRENDS_ENOUGH_ROWS = 20    # in the overview, rows beyond this go to the log
WIDE_COLS = 120            # at and above this the overview puts panes in pairs


TABLE_COLS = 82            # the per-class table's natural width, borders included
TABLE_COMPACT_COLS = 66    # its compact form ("prec", short alarm lines)
PROGRESS_COLS = 50         # progress keeps its lines whole from here (they wrap between parts)


def paired_side_cols(width: int) -> int:
    """The per-class table's and the bottleneck's width when paired with progress / system.
    Progress needs ``PROGRESS_COLS`` first; the table gets its natural width when the rest
    allows, else what is left, down to its compact width, and never more than half when
    even that does not fit."""
    if width - TABLE_COLS >= PROGRESS_COLS:
        return TABLE_COLS
    if width - TABLE_COMPACT_COLS >= PROGRESS_COLS:
        return width - PROGRESS_COLS
    return max(width // 2, min(TABLE_COMPACT_COLS, width - 36))


SYSTEM_COLS = 56           # the system pane's GPU line whole


def bottleneck_cols(width: int) -> int:
    """The bottleneck pane's width beside the system pane: the system pane gets its
    ``SYSTEM_COLS`` (or the progress pane's width above it, when wider), the bottleneck's
    sentences the rest."""
    system = max(width - paired_side_cols(width), min(SYSTEM_COLS, width // 2))
    return width - system


@dataclass(frozen=True)
class Layout:
    """Rows for each shown pane (``COLLAPSED_ROWS`` = its one-line summary), how the trends
    pane arranges its plots ("row": side by side, "column": stacked) and whether the status
    line shows."""

    rows: dict[str, int] = field(default_factory=dict)
    collapsed: frozenset[str] = frozenset()
    plots: str = "row"
    status_line: bool = False
    wide: bool = False

    def plot_rows(self) -> int:
        """Rows of plotting area each trend plot gets (0 when none is drawn)."""
        rows = self.rows.get("trends", 0)
        if not rows or "trends" in self.collapsed:
            return 0
        inner = rows - BORDER_ROWS
        per_plot = inner if self.plots == "row" else inner // PLOTS
        return max(0, per_plot - PLOT_CHROME_ROWS)


def trends_rows_needed(plots: str) -> int:
    per_plot = MIN_PLOT_ROWS + PLOT_CHROME_ROWS
    return BORDER_ROWS + (per_plot if plots == "row" else PLOTS * per_plot)


def plot_arrangement(width: int, rows: int) -> str:
    """Stacked when each stacked plot still gets its rows (wide, readable time axes), else
    side by side."""
    if rows >= trends_rows_needed("column"):
        return "column"
    return "row"


def fill_view(view: str, width: int, height: int) -> Layout:
    """Views 2-4 and a zoom: the status line, then the view's panes filling the screen."""
    room = max(1, height - FOOTER_ROWS - STATUS_ROWS)
    if view == TRENDS:
        return Layout({"trends": room}, plots=plot_arrangement(width, room), status_line=True)
    if view == LOG:
        return Layout({"log": room}, status_line=True)
    if view == SYSTEM:
        system = max(1, room - room // 3)
        return Layout({"system": system, "bottleneck": max(1, room - system)},
                      status_line=True)
    return Layout({view: room}, plots=plot_arrangement(width, room), status_line=True)


def overview(width: int, height: int, natural: dict[str, int]) -> Layout:
    """The dashboard: panes in priority order at their natural heights (``natural``: rows
    with borders) while they fit, the rest collapsed to one line; spare rows go to the trend
    plots, then to the log. At ``WIDE_COLS`` and wider, progress|classes and
    system|bottleneck share a band."""
    wide = width >= WIDE_COLS
    room = max(len(PANES), height - FOOTER_ROWS)
    if wide:
        bands = [("progress", "classes"), ("trends",), ("system", "bottleneck"), ("log",)]
    else:
        bands = [("progress",), ("classes",), ("trends",), ("bottleneck",), ("system",),
                 ("log",)]
    need = {p: max(BORDER_ROWS + 1, natural.get(p, BORDER_ROWS + 1)) for p in PANES}
    need["trends"] = trends_rows_needed("row")
    need["log"] = MIN_LOG_ROWS
    used = COLLAPSED_ROWS * len(bands)           # every band at least its summary line
    full: set[str] = set()
    for band in bands:
        band_need = max(need[p] for p in band)
        if used - COLLAPSED_ROWS + band_need <= room:
            used += band_need - COLLAPSED_ROWS
            full.update(band)
    rows = {}
    for band in bands:
        band_rows = max(need[p] for p in band) if band[0] in full else COLLAPSED_ROWS
        for p in band:
            rows[p] = band_rows
    spare = room - used
    if "trends" in full:           # plots up to TRENDS_ENOUGH_ROWS, then the log
        grow = spare if "log" not in full else min(spare, max(0, TRENDS_ENOUGH_ROWS
                                                               - rows["trends"]))
        rows["trends"] += grow
        spare -= grow
    if "log" in full:
        rows["log"] += spare
    collapsed = frozenset(p for p in PANES if p not in full)
    plots = plot_arrangement(width, rows["trends"]) if "trends" in full else "row"
    return Layout(rows, collapsed, plots=plots, wide=wide)
