"""Where each pane goes, for a terminal size and a view: pure arithmetic, no Textual.

The views and their panes are luna_tui.model.views' tables; there is a zoom too (``z``: the
focused pane alone). Every view fits the screen without scrolling: a pane gets its natural
height or, in the overview, collapses to a one-line summary when it does not fit; a pane is
never given zero rows. A trend plot is only drawn with at least ``MIN_PLOT_ROWS`` rows of
plotting area: the trends pane collapses otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from luna_tui.model import views

FOOTER_ROWS = 1
STATUS_ROWS = 1            # the one-line status above a view but the overview, a zoom
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


def split_rows(room: int, panes: tuple[str, ...], shares: tuple[int, ...] = ()) -> dict[str, int]:
    """``room`` rows between ``panes`` in proportion to ``shares`` (equal without), at least one
    each; the first pane gets what the others leave."""
    shares = shares or (1,) * len(panes)
    total = sum(shares)
    rest = {p: max(1, room * s // total) for p, s in zip(panes[1:], shares[1:])}
    first = max(1, room - sum(room * s // total for s in shares[1:]))
    return {panes[0]: first, **rest}


def fill_view(name: str, width: int, height: int) -> Layout:
    """A view but the overview, or a zoom (``name``: a view's, else a pane's, alone): the status
    line, then the panes filling the screen as the view splits it."""
    room = max(1, height - FOOTER_ROWS - STATUS_ROWS)
    view = views.find_view(name)
    rows = split_rows(room, view.panes, view.shares) if view else {name: room}
    plots = plot_arrangement(width, rows["trends"]) if "trends" in rows else "row"
    return Layout(rows, plots=plots, status_line=True)


def pane_cols(width: int) -> dict[str, int]:
    """The overview's widths of the panes measured for their natural height: side by side in
    pairs from ``WIDE_COLS`` on."""
    if width < WIDE_COLS:
        return dict.fromkeys(("progress", "classes", "system", "bottleneck"), width)
    table, bottleneck = paired_side_cols(width), bottleneck_cols(width)
    return {"progress": width - table, "classes": table,
            "system": width - bottleneck, "bottleneck": bottleneck}


def overview(width: int, height: int, natural: dict[str, int]) -> Layout:
    """The dashboard: panes in priority order at their natural heights (``natural``: rows
    with borders) while they fit, the rest collapsed to one line; spare rows go to the trend
    plots, then to the log. At ``WIDE_COLS`` and wider, progress|classes and
    system|bottleneck share a band (the panes' bands in luna_tui.model.views); narrower, the
    panes are stacked and keep their rows in the overview's order."""
    wide = width >= WIDE_COLS
    panes = views.dashboard().panes
    room = max(len(panes), height - FOOTER_ROWS)
    if wide:
        bands = [names for _band, names in views.bands(panes)]
    else:
        bands = [(p,) for p in panes]
    need = {p: max(BORDER_ROWS + 1, natural.get(p, BORDER_ROWS + 1)) for p in panes}
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
    collapsed = frozenset(p for p in panes if p not in full)
    plots = plot_arrangement(width, rows["trends"]) if "trends" in full else "row"
    return Layout(rows, collapsed, plots=plots, wide=wide)
