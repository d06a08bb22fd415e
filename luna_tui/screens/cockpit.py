"""The cockpit screen: the panes in their slots, the views (1 overview, 2 trends, 3 log,
4 system, 5 diagnostics, 6 examples), the zoom, the plot keys and the baseline. What is on
screen and where; the rows come from luna_tui.model.layout. The app (luna_tui.app) polls the
run and hands each snapshot to ``show``; this screen never talks to the run."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from datetime import datetime

from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Container
from textual.geometry import Size
from textual.screen import Screen
from textual.widgets import Footer, Static

from luna_core.run.commands import COMMANDS, CockpitKey, CommandSpec
from luna_tui.model import diagnostics as dg
from luna_tui.model import layout as plan
from luna_tui.model import summaries
from luna_tui.model.controls import COMMAND_ACTION, UiStatus
from luna_tui.model.formatting import short_path
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.system import SystemReading
from luna_tui.widgets import (
    BottleneckPane,
    ClassTablePane,
    DiagnosticsPane,
    ExamplesPane,
    LogPane,
    ProgressPane,
    SystemPane,
    TrendsPane,
)
from luna_tui.widgets.examples import ExampleCell


def _command_binding(spec: CommandSpec, key: CockpitKey) -> Binding:
    argument = "" if key.argument is None else f", {key.argument!r}"
    return Binding(key.key, f"app.{COMMAND_ACTION}({spec.name!r}{argument})", key.label,
                   show=key.show, key_display=key.display, tooltip=spec.key_help)


#: The keys that steer the run, one binding each, from the commands' table (its order, its
#: labels, its help lines). Their action is the app's (it holds the run's link); the app's
#: ``check_action`` gates them from the same table, and ``active_bindings`` below keeps out
#: of the footer a key that only says why the run cannot be steered from here.
_BOUND = [(spec, _command_binding(spec, key)) for spec in COMMANDS for key in spec.keys]
RUN_KEYS = [binding for _spec, binding in _BOUND]
_KEY_COMMANDS = {binding.action: spec for spec, binding in _BOUND}

_VIEWS_HELP = ("views: 1 all panes (those that do not fit show one line), 2 the trend plots, "
               "3 the log, 4 system and GPU, 5 diagnostics (FROC, PR curve, histograms, "
               "confusion of the latest validation), 6 examples (its worst misses and false "
               "alarms as CT images)")

#: The screen's keys: views, zoom, focus, baseline, and the trend plots' own keys.
VIEW_KEYS = [
    Binding("1", "view('overview')", "Views", key_display="1-6", tooltip=_VIEWS_HELP),
    Binding("2", "view('trends')", "Trends", show=False, tooltip=_VIEWS_HELP),
    Binding("3", "view('log')", "Log", show=False, tooltip=_VIEWS_HELP),
    Binding("4", "view('system')", "System", show=False, tooltip=_VIEWS_HELP),
    Binding("5", "view('diagnostics')", "Diagnostics", show=False, tooltip=_VIEWS_HELP),
    Binding("6", "view('examples')", "Examples", show=False, tooltip=_VIEWS_HELP),
    *DiagnosticsPane.KEYS,
    *ExamplesPane.KEYS,
    Binding("z", "zoom", "Zoom", tooltip="zoom the focused pane to the whole screen (the "
                                         "trend plots if none); z again goes back"),
    *TrendsPane.KEYS,
    Binding("b", "pick_baseline", "Baseline", show=False,
            tooltip="pick a baseline run: its validation curves beside this run's, and in the "
                    "class table whether this run is ahead at the same number of training "
                    "samples"),
    Binding("w", "runs", "Runs", show=False,
            tooltip="the runs screen: every run under the runs folder with its best score, "
                    "marks and an overlay of their curves, and the queue (q goes back)"),
    Binding("tab", "app.focus_next", "Next pane", show=False,
            tooltip="move the focus between the panes"),
    Binding("l", "focus_log", "Log", show=False,
            tooltip="jump to the log (its own view if it does not fit), then ↑ ↓ PgUp PgDn "
                    "scroll it"),
]


class CockpitScreen(Screen):
    """The panes, laid out for the terminal's size and the view."""

    BINDINGS = [*RUN_KEYS, *VIEW_KEYS]

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """Textual's, less a steering key the link refuses (read-only): such a key acts, to
        say why, but the footer does not offer it."""
        active = super().active_bindings
        controls = getattr(self.app, "controls", None)
        if controls is None:
            return active
        return {key: shown for key, shown in active.items()
                if not ((spec := _KEY_COMMANDS.get(shown.binding.action)) is not None
                        and controls.refuses(spec))}

    def __init__(self, *, clock: Callable[[], datetime], plot_interval: float = 1.0,
                 baseline=None, runs_dir: str | None = None,
                 preflight: Callable[[], str] | None = None, image_class=None,
                 run_dir_here: str | None = None) -> None:
        super().__init__()
        self.image_class = image_class    # textual-image's widget for CT slices (None: off)
        self.run_dir_here = run_dir_here  # the run folder as this process sees it
        self.preflight = preflight        # `luna-tui check`'s report, shown while loading
        self.clock = clock
        self.plot_interval = plot_interval
        self.baseline = baseline          # a RunHistory (luna_core.run.compare) or None
        self.runs_dir = runs_dir          # where `b` looks for a baseline
        self.view: str = plan.OVERVIEW
        self.zoomed: str | None = None
        self.layout_plan: plan.Layout | None = None
        self.snap = RunSnapshot()
        self.reading: SystemReading | None = None

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
            with Container(id="band-diagnostics", classes="band"):
                yield from self._slot("diagnostics", DiagnosticsPane(id="diagnostics"))
            with Container(id="band-examples", classes="band"):
                yield from self._slot("examples", ExamplesPane(
                    self.image_class, self.locate_examples, id="examples"))
        yield Footer()

    @staticmethod
    def _slot(name: str, pane) -> ComposeResult:
        """A pane and the one-line summary that stands in for it when it does not fit."""
        pane.add_class("pane")
        with Container(id=f"slot-{name}", classes="slot"):
            yield pane
            yield Static("", id=f"{name}-line", classes="pane-line")

    def on_mount(self) -> None:
        self.query_one(ClassTablePane).versus = lambda snap: summaries.baseline_line(
            snap, self.baseline)
        if self.baseline is not None:
            self.query_one(TrendsPane).set_baseline(self.baseline)
        self.apply_layout()
        if self.preflight is not None:
            self.run_worker(self._run_preflight, name="preflight", thread=True,
                            exit_on_error=False)

    def _run_preflight(self) -> None:
        """The data check while the loader warms up (a thread; one call back)."""
        try:
            text = self.preflight()
        except Exception as exc:  # noqa: BLE001 - a check that fails must not stop the run
            text = f"could not run ({type(exc).__name__}: {exc})"
        self.app.call_from_thread(self.add_log_lines, text, "INFO", "check: ")

    # -- what the run says -----------------------------------------------------------------

    def show(self, snap: RunSnapshot, ui: UiStatus, *, new_events: bool,
             relayout: bool) -> None:
        """Show ``snap``: the panes that depend on events only when there are new ones;
        ``relayout`` when a pane may have grown (the alarm banner, a stopping line)."""
        self.snap = snap
        self.query_one(ProgressPane).show(snap, self.clock(), ui)
        if new_events:
            self.query_one(ClassTablePane).show(snap)
            self.query_one(BottleneckPane).show(snap)
            self.query_one(LogPane).show(snap)
            self.query_one(DiagnosticsPane).show(snap)
            if self.view == plan.EXAMPLES or self.zoomed == plan.EXAMPLES:
                self.query_one(ExamplesPane).show(snap)
        self.query_one(TrendsPane).show(snap)
        if relayout:
            self.relayout()

    def show_reading(self, reading: SystemReading) -> None:
        self.reading = reading
        self.query_one(SystemPane).show(reading)
        if self.layout_plan is not None and "system" in self.layout_plan.collapsed:
            self.query_one("#system-line", Static).update(summaries.system_line(reading))

    def add_log_lines(self, text: str, level: str, prefix: str = "",
                      t: float | None = None) -> None:
        """Lines of the cockpit's own (a failure's traceback, the preflight check, the run's
        summary) in the log, beside the run's; stamped ``t`` (default: now)."""
        log = self.query_one(LogPane)
        when = self.clock().timestamp() if t is None else t
        for line in text.rstrip().splitlines():
            if line.strip():
                log.add_local(prefix + line.rstrip(), level, when)

    # -- views and layout ----------------------------------------------------------------

    def action_view(self, view: str) -> None:
        self.view, self.zoomed = view, None
        self.relayout()
        if view == plan.EXAMPLES:        # the pane, then (once drawn) its first cell
            pane = self.query_one(ExamplesPane)
            pane.focus()
            pane.show(self.snap)
            self.call_after_refresh(pane.focus_first_cell)

    def action_zoom(self) -> None:
        """The focused pane alone on the screen (the trend plots when no pane has focus);
        again to go back."""
        if self.zoomed is not None:
            self.zoomed = None
        else:
            focused = self.focused
            while focused is not None and not focused.has_class("pane"):
                focused = focused.parent
            self.zoomed = (focused.id if focused is not None and focused.id in plan.ALL_PANES
                           else "trends")
        self.relayout()

    def locate_examples(self, path: str, epoch: int) -> str:
        """An examples file named by the run: as written, else under the run folder this
        cockpit knows (an attached run written from another working directory)."""
        if os.path.exists(path) or not self.run_dir_here:
            return path
        from luna_core.run.examples import examples_path

        return examples_path(self.run_dir_here, epoch)

    def _examples_view(self) -> ExamplesPane:
        pane = self.query_one(ExamplesPane)
        if self.view != plan.EXAMPLES and self.zoomed != plan.EXAMPLES:
            self.action_view(plan.EXAMPLES)
        pane.show(self.snap)
        return pane

    def action_examples_kind(self) -> None:
        """`k`: the examples view, then its next kind (misses, false alarms, best hits)."""
        showing = self.view == plan.EXAMPLES or self.zoomed == plan.EXAMPLES
        pane = self._examples_view()
        if showing:
            pane.next_kind()

    def action_examples_epoch(self, step: int) -> None:
        """`,` / `.`: the examples of the validation before / after."""
        self._examples_view().step_epoch(step)

    def action_examples_page(self, step: int) -> None:
        """PgDn / PgUp in the examples view: the next / previous cells (elsewhere nothing:
        a focused pane that scrolls has the keys first)."""
        if self.view == plan.EXAMPLES or self.zoomed == plan.EXAMPLES:
            self.query_one(ExamplesPane).step_page(step)

    def on_example_cell_opened(self, message: ExampleCell.Opened) -> None:
        from luna_tui.screens.example_detail import ExampleDetail

        pane = self.query_one(ExamplesPane)
        if pane.loaded is not None:
            self.app.push_screen(ExampleDetail(pane.loaded, message.example, self.image_class))

    def action_runs(self) -> None:
        from luna_tui.runs_app import RunsScreen

        self.app.push_screen(RunsScreen(self.runs_dir or "runs", self.snap.run_dir or None),
                             self._on_run_chosen)

    def _on_run_chosen(self, chosen: tuple[str, str] | None) -> None:
        """Enter on a run in the runs screen: this cockpit shows one run; the other one
        opens in another terminal."""
        if chosen is None:
            return
        _how, run_dir = chosen
        if os.path.abspath(run_dir) == os.path.abspath(self.snap.run_dir or ""):
            return
        self.app.toast(f"luna-tui attach {shlex.quote(run_dir)}",
                       title="Open it in another terminal", timeout=12)

    def action_next_diagnostic(self) -> None:
        """`n`: the diagnostics view, or its next plot when it shows one at a time."""
        pane = self.query_one(DiagnosticsPane)
        if self.view != plan.DIAGNOSTICS and self.zoomed != plan.DIAGNOSTICS:
            self.action_view(plan.DIAGNOSTICS)
        elif not pane.grid:
            pane.next_plot()

    def action_focus_log(self) -> None:
        lay = self.layout_plan
        if lay is not None and ("log" not in lay.rows or "log" in lay.collapsed):
            self.action_view(plan.LOG)
        self.query_one(LogPane).focus()

    def action_plot(self, what: str) -> None:
        """The trend plots' keys (s y x): their titles and axis labels say what is on."""
        self.query_one(TrendsPane).toggle(what)

    # -- the baseline ----------------------------------------------------------------------

    def set_baseline(self, baseline) -> None:
        """Show ``baseline`` (a RunHistory) beside this run: its validation curves in the
        trend plots, and in the class table whether this run is ahead at the same number of
        training samples."""
        self.baseline = baseline
        self.query_one(TrendsPane).set_baseline(baseline)
        self.query_one(ClassTablePane).forget()
        if baseline is not None:
            self.app.toast(short_path(baseline.run_dir, os.path.dirname(self.snap.run_dir)),
                           title="Baseline", timeout=4)

    def action_pick_baseline(self) -> None:
        """`b`: pick the baseline among the runs under --runs-dir."""
        from luna_tui.screens.baseline import BaselinePicker

        self.app.push_screen(BaselinePicker(self.runs_dir or "runs", self.snap.run_dir),
                             self._on_baseline_picked)

    def _on_baseline_picked(self, run_dir: str | None) -> None:
        if run_dir is None:
            return
        from luna_core.errors import LunaInputError
        from luna_core.run.compare import read_history

        try:
            self.set_baseline(read_history(run_dir) if run_dir else None)
        except LunaInputError as exc:
            self.app.toast(str(exc), title="No baseline", severity="error", timeout=8)

    # -- layout ----------------------------------------------------------------------------

    def _natural_rows(self, name: str, width: int) -> int:
        pane = self.query_one(f"#{name}")
        inner = max(10, width - 4)                  # border and padding
        try:
            rows = pane.get_content_height(Size(width, self.size.height), self.size, inner)
        except Exception:  # noqa: BLE001 - a pane that cannot say: give it a few rows
            rows = 4
        return rows + plan.BORDER_ROWS

    @staticmethod
    def _pane_cols(width: int) -> dict[str, int]:
        """The overview's pane widths: side by side in pairs from ``WIDE_COLS`` on."""
        if width < plan.WIDE_COLS:
            return dict.fromkeys(("progress", "classes", "system", "bottleneck"), width)
        table, bottleneck = plan.paired_side_cols(width), plan.bottleneck_cols(width)
        return {"progress": width - table, "classes": table,
                "system": width - bottleneck, "bottleneck": bottleneck}

    def apply_layout(self) -> None:
        """Give each pane its rows for the terminal size and the view (layout.py decides)."""
        width, height = self.size
        if self.zoomed is not None:
            lay = plan.fill_view(self.zoomed, width, height)
        elif self.view != plan.OVERVIEW:
            lay = plan.fill_view(self.view, width, height)
        else:
            natural = {name: self._natural_rows(name, cols)
                       for name, cols in self._pane_cols(width).items()}
            lay = plan.overview(width, height, natural)
        if lay == self.layout_plan:
            return
        self.layout_plan = lay
        body = self.query_one("#body")
        body.set_class(lay.wide, "-paired")
        cols = self._pane_cols(width)
        for name in ("classes", "bottleneck"):
            self.query_one(f"#slot-{name}").styles.width = cols[name] if lay.wide else "1fr"
        self.query_one("#status").display = lay.status_line
        for name in plan.ALL_PANES:
            slot = self.query_one(f"#slot-{name}")
            slot.display = name in lay.rows
            if name in lay.rows:
                slot.styles.height = lay.rows[name]
                slot.set_class(name in lay.collapsed, "-collapsed")
        for band in self.query(".band"):
            band.display = any(child.display for child in band.children)
        self.query_one(TrendsPane).arrange_plots(lay.plots)
        self.query_one(DiagnosticsPane).show_plots(dg.grid(width, height))
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
            status = self.query_one("#status", Static)
            room = (status.content_size.width or self.size.width - 2)
            status.update(summaries.status_line(snap, name, room))
        lines = {"progress": lambda: summaries.progress_line(snap),
                 "classes": lambda: summaries.classes_line(snap),
                 "trends": lambda: summaries.trends_line(snap),
                 "system": lambda: summaries.system_line(self.reading),
                 "bottleneck": lambda: summaries.bottleneck_line(snap),
                 "log": lambda: summaries.log_line(snap)}
        for name in lay.collapsed:
            self.query_one(f"#{name}-line", Static).update(lines[name]())
