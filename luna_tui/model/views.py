"""The cockpit's views and panes, declared once (issue 29): per view its key, name, title,
help, the panes it shows and how it splits the screen between them; per pane its widget, its
title and help, the band it sits in, when it is shown the run and its one-line summary. The
cockpit screen (luna_tui.screens.cockpit) composes, binds, lays out and builds its help from
these tables; luna_tui.model.layout does the arithmetic.

A new view: its pane's widget (a module in luna_tui/widgets, with its own keys and actions),
a ``PaneSpec`` and a ``ViewSpec`` here, and its styles in luna_tui/cockpit.tcss. No Textual
here: a pane names its widget by its dotted path (luna_tui.widgets.pane_class finds it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from luna_tui.model import pane_lines
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.system_reading import SystemReading

#: When a pane is shown the run (``PaneSpec.follows``).
POLL = "poll"              # every poll: what moves between events (clocks, the live loss)
EVENTS = "events"          # when new events arrived
ON_SCREEN = "on screen"    # when new events arrived and the pane is on screen (costly to draw)
READINGS = "readings"      # the system readings, not the run


@dataclass(frozen=True)
class PaneSpec:
    """A pane: ``#NAME`` on screen, in the slot ``#slot-NAME`` beside its one-line summary
    ``#NAME-line``."""

    name: str
    title: str                  # in the help's list of panes
    help: str                   # what it shows, in that list
    widget: str                 # its widget class, a dotted path under luna_tui.widgets
    band: str = ""              # panes of one band pair up in a wide overview (default: its own)
    follows: str = EVENTS
    #: Its one-line summary when the overview collapses it: of what the pane is shown (the
    #: snapshot, or the reading of a READINGS pane) and the key of the view that shows it whole.
    line: Callable[..., str] | None = None

    @property
    def band_name(self) -> str:
        return self.band or self.name

    def due(self, new_events: bool, on_screen: bool) -> bool:
        """Whether the pane is shown the run at a poll (one with ``new_events`` or not, the
        pane ``on_screen`` or not)."""
        if self.follows == POLL:
            return True
        # a READINGS pane is shown the run too when events came (the system pane: the ranks)
        return new_events and (self.follows in (EVENTS, READINGS)
                               or self.follows == ON_SCREEN and on_screen)


@dataclass(frozen=True)
class ViewSpec:
    """A view: its key shows ``panes`` and nothing else."""

    name: str                   # what the status line calls it
    key: str
    title: str                  # its key's description
    help: str                   # its part of the help's line on the views, after its key
    panes: tuple[str, ...]
    #: How the view splits the rows between its panes (equal when empty; the first pane gets
    #: what the others leave).
    shares: tuple[int, ...] = ()
    #: The overview: every pane at its natural height while it fits, the others collapsed
    #: to their one-line summary, last of ``panes`` first.
    dashboard: bool = False


PANES: tuple[PaneSpec, ...] = (
    PaneSpec("progress", "Progress",
             "state, epoch, batch, samples/s; when the phase and the run end. ETAs use active "
             "time only (paused time never counts); ≈ marks a guess.",
             "luna_tui.widgets.progress.ProgressPane", band="top", follows=POLL,
             line=pane_lines.progress_line),
    PaneSpec("classes", "Per class",
             "latest epoch for trn and val: loss, % correct, k of n; precision, recall and F1 "
             "of the positive class; under it LUNA16's CPM of the validation with its 95 % "
             "interval, sensitivity at 1 FP per scan, AUC and AP. A NODULES MISSED banner "
             "appears when 'all' looks excellent but nodules are almost never found.",
             "luna_tui.widgets.class_table.ClassTablePane", band="top",
             line=pane_lines.classes_line),
    PaneSpec("trends", "Trends",
             "live training loss per batch (smoothed, the raw values dotted behind; ▲ marks "
             "values clipped at the top); loss/all, loss/pos and % of nodules correct per "
             "epoch (orange trn, blue val; a marker per series). Titles: the latest value and "
             "the best so far.",
             "luna_tui.widgets.trends.TrendsPane", follows=POLL, line=pane_lines.trends_line),
    PaneSpec("diagnostics", "Diagnostics",
             "the latest validation beside the one before it: LUNA16's FROC (sensitivity "
             "against false positives per scan; the CPM is the mean at the seven marked "
             "points, with its 95 % bootstrap interval), the PR curve, the prediction "
             "histograms of nodules and non-nodules with one line that reads them, and the "
             "confusion counts at 0.5. n: the next plot when the screen shows one at a time.",
             "luna_tui.widgets.diagnostics.DiagnosticsPane"),
    PaneSpec("examples", "Examples",
             "the latest validation's worst misses, false alarms or best hits as CT slices "
             "(lung window, the annotated diameter as a circle) with their probability and "
             "loss. k kind, , . epoch, PgDn more, Enter three planes.",
             "luna_tui.widgets.examples.ExamplesPane", follows=ON_SCREEN),
    PaneSpec("epochs", "Epochs",
             "every epoch as a row, newest first: trn and val loss, % of nodules correct, "
             "the validation's CPM; each column's best in bold, the best epochs under it.",
             "luna_tui.widgets.epoch_table.EpochTablePane"),
    PaneSpec("system", "System",
             "CPU, RAM, this process and its loader workers; GPUs through NVML.",
             "luna_tui.widgets.system.SystemPane", band="mid", follows=READINGS,
             line=pane_lines.system_line),
    PaneSpec("bottleneck", "Bottleneck",
             "share of recent batch time spent waiting for data vs computing.",
             "luna_tui.widgets.bottleneck.BottleneckPane", band="mid",
             line=pane_lines.bottleneck_line),
    PaneSpec("log", "Log", "the training loop's log lines.", "luna_tui.widgets.log.LogPane",
             line=pane_lines.log_line),
    PaneSpec("ranks", "Ranks",
             "under torchrun: each rank's data wait, copy to the device, forward, backward "
             "(with the all-reduce's wait for the slowest), optimizer step, samples/s and "
             "score (1: the fastest rank), the straggler named and why, and each rank's own "
             "time a batch over the run.",
             "luna_tui.widgets.ranks.RanksPane"),
)

VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("overview", "1", "Overview", "all panes (those that do not fit show one line)",
             ("progress", "classes", "trends", "bottleneck", "system", "log"), dashboard=True),
    ViewSpec("trends", "2", "Trends", "the trend plots", ("trends",)),
    ViewSpec("log", "3", "Log", "the log", ("log",)),
    ViewSpec("system", "4", "System", "system and GPU", ("system", "bottleneck"),
             shares=(2, 1)),
    ViewSpec("diagnostics", "5", "Diagnostics", "diagnostics (FROC, PR curve, histograms, "
             "confusion of the latest validation)", ("diagnostics",)),
    ViewSpec("examples", "6", "Examples", "examples (its worst misses and false alarms as CT "
             "images)", ("examples",)),
    ViewSpec("epochs", "7", "Epochs", "every epoch's losses, nodules correct and CPM as a "
             "table", ("epochs",)),
    ViewSpec("ranks", "8", "Ranks", "every rank of a torchrun job side by side (the "
             "straggler and why)", ("ranks",)),
)


def pane(name: str) -> PaneSpec:
    return next(p for p in PANES if p.name == name)


def pane_names() -> tuple[str, ...]:
    return tuple(p.name for p in PANES)


def view(name: str) -> ViewSpec:
    return next(v for v in VIEWS if v.name == name)


def find_view(name: str) -> ViewSpec | None:
    return next((v for v in VIEWS if v.name == name), None)


def dashboard() -> ViewSpec:
    """The overview (the view that opens first)."""
    return next(v for v in VIEWS if v.dashboard)


def home(name: str) -> ViewSpec:
    """The view that shows pane ``name`` largest: of those that show it, the one with the
    fewest panes (the first of them)."""
    return min((v for v in VIEWS if name in v.panes), key=lambda v: len(v.panes))


def off_dashboard(name: str) -> bool:
    """Pane ``name`` has a view of its own only: its keys bring that view up first."""
    return name not in dashboard().panes


def bands(names: tuple[str, ...] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """The bands of the panes ``names`` (default: all), in the table's order, each with its
    panes in that order."""
    grouped: dict[str, list[str]] = {}
    for spec in PANES:
        if names is None or spec.name in names:
            grouped.setdefault(spec.band_name, []).append(spec.name)
    return [(band, tuple(panes)) for band, panes in grouped.items()]


def views_help() -> str:
    """The help's line on the views keys."""
    return "views: " + ", ".join(f"{v.key} {v.help}" for v in VIEWS)


def pane_help(spec: PaneSpec) -> str:
    """A pane's line in the help: a pane with a view of its own says which."""
    if off_dashboard(spec.name):
        return f"view {home(spec.name).key}: {spec.help}"
    return spec.help


def summary(spec: PaneSpec, snap: RunSnapshot, reading: SystemReading | None) -> str:
    """Pane ``spec``'s one-line summary (it has one: ``spec.line``) for the snapshot and the
    latest system reading."""
    if spec.follows == READINGS:            # the readings, and the run's ranks beside them
        return spec.line(reading, home(spec.name).key, snap)
    return spec.line(snap, home(spec.name).key)
