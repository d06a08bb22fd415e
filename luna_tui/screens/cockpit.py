"""The cockpit screen: the panes of the views table (luna_tui.model.views) in their slots, the
views, the zoom and the baseline. What is on screen and where: the table says which panes a
view shows and their keys, luna_tui.model.layout the rows each gets. The app (luna_tui.app)
polls the run and hands each snapshot to ``show``; this screen never talks to the run."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from datetime import datetime

from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Footer, Static

from luna_core.run.command_table import COMMANDS, CockpitKey, CommandSpec
from luna_tui.model import layout as plan
from luna_tui.model import pane_lines, views
from luna_tui.model.formatting import short_path
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.steering import COMMAND_ACTION, UiStatus
from luna_tui.model.system_reading import SystemReading
from luna_tui.widgets import pane_class


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


def _pane_bindings(names: list[str] | tuple[str, ...]) -> list[Binding]:
    """The keys of the panes ``names`` (their widgets' ``KEYS``), bound on the screen so that
    they work whatever has the focus: each runs its pane's own action (``pane_key``). The
    help line of a pane's keys says which view it has of its own."""
    bound = []
    for name in names:
        for key in pane_class(views.pane(name).widget).KEYS:
            home = views.home(name)
            help_line = (f"{home.name} view ({home.key}): {key.tooltip}"
                         if views.off_dashboard(name) else key.tooltip)
            bound.append(Binding(key.key, f"pane_key({name!r}, {key.action!r})",
                                 key.description, show=key.show, key_display=key.key_display,
                                 tooltip=help_line))
    return bound


def view_keys() -> list[Binding]:
    """A key per view of the views table (the first in the footer, for them all), then the
    keys of the panes that have a view of their own."""
    table, help_line = views.VIEWS, views.views_help()
    first, last = table[0], table[-1]
    keys = [Binding(first.key, f"view({first.name!r})", "Views",
                    key_display=f"{first.key}-{last.key}", tooltip=help_line)]
    keys += [Binding(v.key, f"view({v.name!r})", v.title, show=False, tooltip=help_line)
             for v in table[1:]]
    return keys + _pane_bindings([p for p in views.pane_names() if views.off_dashboard(p)])


def screen_keys() -> list[Binding]:
    """The screen's keys: the run's, the views and their panes', zoom, the overview's panes'
    own (the plots'), baseline, runs, focus."""
    return [
        *RUN_KEYS,
        *view_keys(),
        Binding("z", "zoom", "Zoom", tooltip="zoom the focused pane to the whole screen (the "
                                             "trend plots if none); z again goes back"),
        *_pane_bindings(views.dashboard().panes),
        Binding("b", "pick_baseline", "Baseline", show=False,
                tooltip="pick a baseline run: its validation curves beside this run's, and in "
                        "the class table whether this run is ahead at the same number of "
                        "training samples"),
        Binding("w", "runs", "Runs", show=False,
                tooltip="the runs screen: every run under the runs folder with its best score, "
                        "marks and an overlay of their curves, and the queue (q goes back)"),
        Binding("tab", "app.focus_next", "Next pane", show=False,
                tooltip="move the focus between the panes"),
        Binding("l", "focus_log", "Log", show=False,
                tooltip="jump to the log (its own view if it does not fit), then ↑ ↓ PgUp PgDn "
                        "scroll it"),
    ]


class PaneLine(Static):
    """The one-line summary that stands in for a pane that does not fit: Tab reaches it as
    it reaches the panes, and `z` zooms the pane it stands for."""

    can_focus = True


def _slot(name: str, pane) -> ComposeResult:
    """A pane and the one-line summary that stands in for it when it does not fit."""
    pane.add_class("pane")
    with Container(id=f"slot-{name}", classes="slot"):
        yield pane
        yield PaneLine("", id=f"{name}-line", classes="pane-line")


class CockpitScreen(Screen):
    """The panes of the views table, laid out for the terminal's size and the view."""

    BINDINGS = screen_keys()

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
        self.view: str = views.dashboard().name
        self.zoomed: str | None = None
        self.layout_plan: plan.Layout | None = None
        self.snap = RunSnapshot()
        self.reading: SystemReading | None = None

    def compose(self) -> ComposeResult:
        """Each pane of the table in its slot, beside the one-line summary that stands in
        for it when it does not fit; the slots in their bands."""
        yield Static("", id="status")
        with Container(id="body"):
            for band, names in views.bands():
                with Container(id=f"band-{band}", classes="band"):
                    for name in names:
                        yield from _slot(name, pane_class(views.pane(name).widget)
                                         .for_cockpit(self, name))
        yield Footer()

    def pane(self, name: str):
        """The pane ``#name`` (a CockpitPane of luna_tui.widgets)."""
        return self.query_one(f"#{name}")

    def on_mount(self) -> None:
        if self.baseline is not None:
            for name in views.pane_names():
                self.pane(name).set_baseline(self.baseline)
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
        """Show ``snap`` to each pane as the table says (every poll, or only when there are
        new events); ``relayout`` when a pane may have grown (the alarm banner, a stopping
        line)."""
        self.snap = snap
        now = self.clock()
        for spec in views.PANES:
            if spec.due(new_events, self.showing(spec.name)):
                self.pane(spec.name).follow(snap, ui, now)
        if relayout:
            self.relayout()

    def show_reading(self, reading: SystemReading) -> None:
        """The system reading to the panes that follow it; a new layout when the reading
        changes how many lines they need (the first reading, a GPU that appears): the layout
        may have been made before it, and a finished run brings no events that would
        make it again."""
        before = self._reading_rows()
        self.reading = reading
        for spec in views.PANES:
            if spec.follows == views.READINGS:
                self.pane(spec.name).show(reading)
                if self.layout_plan is not None and spec.name in self.layout_plan.collapsed:
                    self.query_one(f"#{spec.name}-line", Static).update(
                        views.summary(spec, self.snap, reading))
        if self.layout_plan is not None and self._reading_rows() != before:
            self.relayout()

    def _reading_rows(self) -> tuple[int, ...]:
        """The rows each pane that follows the readings needs at its width now."""
        cols = plan.pane_cols(self.size.width)
        return tuple(self.pane(spec.name).natural_rows(cols.get(spec.name, self.size.width),
                                                       self.size)
                     for spec in views.PANES if spec.follows == views.READINGS)

    def add_log_lines(self, text: str, level: str, prefix: str = "",
                      t: float | None = None) -> None:
        """Lines of the cockpit's own (a failure's traceback, the preflight check, the run's
        summary) in the log, beside the run's; stamped ``t`` (default: now)."""
        log = self.pane("log")
        when = self.clock().timestamp() if t is None else t
        for line in text.rstrip().splitlines():
            if line.strip():
                log.add_local(prefix + line.rstrip(), level, when)

    # -- views and zoom ----------------------------------------------------------------------

    def action_view(self, view: str) -> None:
        self.view, self.zoomed = view, None
        self.relayout()
        for name in views.view(view).panes:
            self.pane(name).opened(self.snap)

    def showing(self, name: str) -> bool:
        """Whether pane ``name`` is on screen: in the view, or zoomed."""
        return self.zoomed == name or name in views.view(self.view).panes

    def bring_up(self, name: str) -> bool:
        """Bring up the view of pane ``name`` unless the pane is on screen; whether it did."""
        if self.showing(name):
            return False
        self.action_view(views.home(name).name)
        return True

    async def action_pane_key(self, name: str, action: str) -> None:
        """A key of pane ``name``'s own: its ``action``."""
        await self.pane(name).run_action(action)

    def action_zoom(self) -> None:
        """The focused pane alone on the screen (the trend plots when no pane has focus);
        again to go back."""
        if self.zoomed is not None:
            self.zoomed = None
        else:
            focused = self.focused
            if isinstance(focused, PaneLine):         # a collapsed pane's line: that pane
                self.zoomed = focused.id.removesuffix("-line")
                self.relayout()
                self.pane(self.zoomed).focus()
                return
            while focused is not None and not focused.has_class("pane"):
                focused = focused.parent
            self.zoomed = (focused.id if focused is not None
                           and focused.id in views.pane_names() else "trends")
        self.relayout()

    def action_focus_log(self) -> None:
        lay = self.layout_plan
        if lay is not None and ("log" not in lay.rows or "log" in lay.collapsed):
            self.action_view(views.home("log").name)
        self.pane("log").focus()

    def action_runs(self) -> None:
        from luna_tui.runs_app import RunsScreen

        self.app.push_screen(RunsScreen(
            self.runs_dir or "runs", self.snap.run_dir or None, leave_help="back to the cockpit",
            open_help="this cockpit stays on its run: a toast gives the command that opens "
                      "the chosen one in another terminal"), self._on_run_chosen)

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

    # -- the baseline ----------------------------------------------------------------------

    def set_baseline(self, baseline) -> None:
        """Show ``baseline`` (a RunHistory) beside this run: its validation curves in the
        trend plots, and in the class table whether this run is ahead at the same number of
        training samples."""
        self.baseline = baseline
        for name in views.pane_names():
            self.pane(name).set_baseline(baseline)
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

    def _plan(self, width: int, height: int) -> plan.Layout:
        if self.zoomed is not None or not views.view(self.view).dashboard:
            return plan.fill_view(self.zoomed or self.view, width, height)
        natural = {name: self.pane(name).natural_rows(cols, self.size)
                   for name, cols in plan.pane_cols(width).items()}
        return plan.overview(width, height, natural)

    def apply_layout(self) -> None:
        """Give each pane its rows for the terminal size and the view (layout.py decides)."""
        width, height = self.size
        lay = self._plan(width, height)
        if lay == self.layout_plan:
            return
        self.layout_plan = lay
        self.query_one("#body").set_class(lay.wide, "-paired")
        cols = plan.pane_cols(width)
        for _band, names in views.bands():
            for name in names[1:]:              # beside the band's first pane when wide
                self.query_one(f"#slot-{name}").styles.width = cols[name] if lay.wide else "1fr"
        self.query_one("#status").display = lay.status_line
        for name in views.pane_names():
            slot = self.query_one(f"#slot-{name}")
            slot.display = name in lay.rows
            if name in lay.rows:
                slot.styles.height = lay.rows[name]
                slot.set_class(name in lay.collapsed, "-collapsed")
        for band in self.query(".band"):
            band.display = any(child.display for child in band.children)
        for name in views.pane_names():
            self.pane(name).laid_out(lay, width, height)

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
            status = self.query_one("#status", Static)
            room = (status.content_size.width or self.size.width - 2)
            status.update(pane_lines.status_line(snap, self.zoomed or self.view, room,
                                                 overview_key=views.dashboard().key))
        for name in lay.collapsed:
            self.query_one(f"#{name}-line", Static).update(
                views.summary(views.pane(name), snap, self.reading))
