"""The cockpit's views (1 overview, 2 trends, 3 log, 4 system), the zoom, the plot keys and
the baseline: what is on screen and where (luna_tui.model.layout decides the rows). A mixin of
CockpitApp, which composes the panes in their slots here."""

from __future__ import annotations

import os

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.geometry import Size
from textual.widgets import Footer, Static

from luna_tui.link.system_probe import SystemReading
from luna_tui.model import layout as plan
from luna_tui.model import summaries
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.widgets import (
    BottleneckPane,
    ClassTablePane,
    LogPane,
    ProgressPane,
    SystemPane,
    TrendsPane,
)

#: The views, the zoom and the plot keys (the cockpit's and attach's).
VIEW_BINDINGS = [
    Binding("1", "view('overview')", "Views", key_display="1-4"),   # one footer entry
    Binding("2", "view('trends')", "Trends", show=False),
    Binding("3", "view('log')", "Log", show=False),
    Binding("4", "view('system')", "System", show=False),
    Binding("z", "zoom", "Zoom"),
    Binding("s", "plot('smoothing')", "Smooth", show=False),
    Binding("y", "plot('log')", "Log y", show=False),
    Binding("x", "plot('x')", "x axis", show=False),
    Binding("l", "focus_log", "Log", show=False),
    Binding("b", "pick_baseline", "Baseline", show=False),
    Binding("left_square_bracket", "steer_lr(0.5)", "lr ÷2", show=False, key_display="["),
    Binding("right_square_bracket", "steer_lr(2.0)", "lr ×2", show=False, key_display="]"),
]


def short_path(path: str, run_dir: str) -> str:
    """A checkpoint's path from its run directory on ('checkpoints/e001-b000120.pt')."""
    if run_dir and path.startswith(run_dir.rstrip("/") + "/"):
        return path[len(run_dir.rstrip("/")) + 1:]
    return path if len(path) <= 60 else "…" + path[-59:]


class ViewsMixin:
    """Views, zoom, plot keys and baseline for CockpitApp (an App)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with Container(id="body"):
            with Container(id="band-top", classes="band"):
                yield from self._slot("progress", ProgressPane(id="progress"))
                yield from self._slot("classes", ClassTablePane(id="classes"))
            with Container(id="band-trends", classes="band"):
                yield from self._slot("trends", TrendsPane(id="trends",
                                                           min_interval=self.plot_interval))
            with Container(id="band-mid", classes="band"):
                yield from self._slot("system", SystemPane(id="system"))
                yield from self._slot("bottleneck", BottleneckPane(id="bottleneck"))
            with Container(id="band-log", classes="band"):
                yield from self._slot("log", LogPane(id="log", tz=lambda: self.clock().tzinfo))
        yield Footer()

    @staticmethod
    def _slot(name: str, pane) -> ComposeResult:
        """A pane and the one-line summary that stands in for it when it does not fit."""
        pane.add_class("pane")
        with Container(id=f"slot-{name}", classes="slot"):
            yield pane
            yield Static("", id=f"{name}-line", classes="pane-line")

    # -- views and layout ----------------------------------------------------------------

    view: str = plan.OVERVIEW
    zoomed: str | None = None
    layout_plan: plan.Layout | None = None
    _reading: SystemReading | None = None

    def action_view(self, view: str) -> None:
        self.view, self.zoomed = view, None
        self.relayout()

    def action_zoom(self) -> None:
        """The focused pane alone on the screen (the trend plots when no pane has focus);
        again to go back."""
        if self.zoomed is not None:
            self.zoomed = None
        else:
            focused = self.focused
            while focused is not None and not focused.has_class("pane"):
                focused = focused.parent
            self.zoomed = (focused.id if focused is not None and focused.id in plan.PANES
                           else "trends")
        self.relayout()

    def set_baseline(self, baseline) -> None:
        """Show ``baseline`` (a RunHistory) beside this run: its validation curves in the
        trend plots, and in the class table whether this run is ahead at the same number of
        training samples."""
        self.baseline = baseline
        self.query_one(TrendsPane).set_baseline(baseline)
        table = self.query_one(ClassTablePane)
        table._key = None
        table.show(self.snap)
        if baseline is not None:
            self.toast(short_path(baseline.run_dir, os.path.dirname(self.snap.run_dir)),
                       title="Baseline", timeout=4)

    def action_pick_baseline(self) -> None:
        """`b`: pick the baseline among the runs under --runs-dir."""
        from luna_tui.screens.baseline import BaselinePicker

        self.push_screen(BaselinePicker(self.runs_dir or "runs", self.snap.run_dir),
                         self._on_baseline_picked)

    def _on_baseline_picked(self, run_dir: str | None) -> None:
        if run_dir is None:
            return
        from luna_core.errors import LunaInputError
        from luna_core.run.compare import read_history

        try:
            self.set_baseline(read_history(run_dir) if run_dir else None)
        except LunaInputError as exc:
            self.toast(str(exc), title="No baseline", severity="error", timeout=8)

    def action_plot(self, what: str) -> None:
        """The plot keys: s smoothing of the batch loss, y log scale, x samples / epochs (the
        plots' titles and axis labels say which)."""
        trends = self.query_one(TrendsPane)
        {"smoothing": trends.toggle_smoothing, "log": trends.toggle_log,
         "x": trends.toggle_x}[what]()

    def _natural_rows(self, name: str, width: int) -> int:
        pane = self.query_one(f"#{name}")
        inner = max(10, width - 4)                  # border and padding
        try:
            rows = pane.get_content_height(Size(width, self.size.height), self.size, inner)
        except Exception:  # noqa: BLE001 - a pane that cannot say: give it a few rows
            rows = 4
        return rows + plan.BORDER_ROWS

    def apply_layout(self) -> None:
        """Give each pane its rows for the terminal size and the view (layout.py decides)."""
        width, height = self.size
        if self.zoomed is not None:
            lay = plan.fill_view(self.zoomed, width, height)
        elif self.view != plan.OVERVIEW:
            lay = plan.fill_view(self.view, width, height)
        else:
            paired = width >= plan.WIDE_COLS
            side = plan.paired_side_cols(width)
            natural = {name: self._natural_rows(name, (width - side) if paired and name in (
                "progress", "system") else side if paired else width)
                       for name in ("progress", "classes", "system", "bottleneck")}
            lay = plan.overview(width, height, natural)
        if lay == self.layout_plan:
            return
        self.layout_plan = lay
        body = self.query_one("#body")
        body.set_class(lay.wide, "-paired")
        side = plan.paired_side_cols(width) if lay.wide else None
        for name in ("classes", "bottleneck"):
            self.query_one(f"#slot-{name}").styles.width = side or "1fr"
        self.query_one("#status").display = lay.status_line
        for name in plan.PANES:
            slot = self.query_one(f"#slot-{name}")
            slot.display = name in lay.rows
            if name in lay.rows:
                slot.styles.height = lay.rows[name]
                slot.set_class(name in lay.collapsed, "-collapsed")
        for band in self.query(".band"):
            band.display = any(child.display for child in band.children)
        self.query_one(TrendsPane).arrange_plots(lay.plots)
        log = self.query_one(LogPane)
        self.call_after_refresh(log.scroll_end, animate=False)   # its newest lines in view

    def relayout(self) -> None:
        """The layout for now, and the one-line summaries it shows."""
        self.apply_layout()
        self.show_lines(self.snap)

    def on_resize(self) -> None:
        self.call_after_refresh(self.relayout)

    def show_lines(self, snap: RunSnapshot) -> None:
        """The one-line summaries of collapsed panes and the status line."""
        lay = self.layout_plan
        if lay is None:
            return
        if lay.status_line:
            name = self.zoomed or self.view
            self.query_one("#status", Static).update(summaries.status_line(snap, name))
        lines = {"progress": lambda: summaries.progress_line(snap),
                 "classes": lambda: summaries.classes_line(snap),
                 "trends": lambda: summaries.trends_line(snap),
                 "system": lambda: summaries.system_line(self._reading),
                 "bottleneck": lambda: summaries.bottleneck_line(snap),
                 "log": lambda: summaries.log_line(snap)}
        for name in lay.collapsed:
            self.query_one(f"#{name}-line", Static).update(lines[name]())

