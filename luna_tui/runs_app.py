"""`luna-tui runs --tui`: one screen over every run in a runs folder, and the queue.

The table lists each run (state, name, epochs, best validation score — CPM with its interval
where the run has it, else F1 — and the options that differ between the listed runs) and each
queued entry. `/` filters by text, `s` sorts by the next column (again: the other way), space
marks a run, `o` overlays the marked runs' validation curves in one plot (one stable colour per
run), Enter opens the run under the cursor in the cockpit (attached when it is live, its history
when it has ended). Below, the queue: `a` adds a copy of the selected run's options to it, `x`
removes the selected queued entry. The screen reads the folder again every few seconds (runs
that start or end, the queue moving on; `r` at once), keeping the cursor on its run; `?` is its
own help. The app returns what Enter chose; the command opens it and comes back here when the
cockpit is left. Rows come from luna_tui.model.workspace (the runs' indexes, not their whole
event files).
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual_plotext import PlotextPlot

from luna_core.errors import LunaInputError
from luna_core.run import queue as qu
from luna_core.run.listing import elide_run
from luna_core.run.runs import check_runs_dir, list_runs_with_events
from luna_tui.model import workspace as ws

RUNS_CSS = """
#filter { display: none; height: 3; }
#filter.-shown { display: block; }
#runs { height: 1fr; }
#overlay { display: none; height: 1fr; }
#overlay.-shown { display: block; }
#queue-title { height: 1; background: $primary 30%; }
#queue { height: auto; max-height: 8; }
#runs-status { height: 1; }
"""


#: The RUN column's width in cells: a quarter of the screen, within these.
RUN_MIN, RUN_MAX = 24, 44
#: Seconds between reads of the runs folder and the queue while the screen is shown.
REFRESH_S = 3.0
OPEN_HELP = "open the run in the cockpit (attached when live, its history when ended)"
LEAVE_HELP = "back"
#: What the runs screen's help says under "Columns".
COLUMN_HELP = (
    ("STATE", "live, paused, finished, stopped, failed or crashed (a run whose process is gone "
              "without an ending); queued entries: queued, running, done, failed"),
    ("RUN", "the run's folder name: its start time and comment (a long one cut in the middle)"),
    ("EPOCH", "epochs done of those asked for, and the epoch it is (or was, when it ended) "
              "inside ('1/2, in E2')"),
    ("BEST VALIDATION", "the best CPM with its 95 % interval and the epoch (else F1)"),
    ("OPTIONS THAT DIFFER", "the options that are not the defaults and not the same in every "
                            "listed run"),
    ("Queue", "below the runs: what 'luna-tui queue run' works through, one entry a row"),
)


class RunsScreen(Screen[tuple[str, str] | None]):
    """The runs and the queue; dismissed with what Enter chose (None: nothing)."""

    DEFAULT_CSS = RUNS_CSS
    BINDINGS = [
        Binding("slash", "filter", "Filter",
                tooltip="filter: runs whose state, name, score or option values hold the text"),
        Binding("s", "sort", "Sort", show=False,
                tooltip="sort by the next column (again: the other way; or click a header)"),
        Binding("space", "mark", "Mark", tooltip="mark / unmark the run (for the overlay)"),
        Binding("o", "overlay", "Overlay",
                tooltip="the marked runs' validation curves in one plot (again: hide it)"),
        Binding("enter", "open", "Open", show=False,
                tooltip=OPEN_HELP),
        Binding("a", "queue_add", "Queue",
                tooltip="queue a run with the selected run's options"),
        Binding("x", "queue_remove", "Unqueue",
                tooltip="remove the selected queued entry (not one that is running)"),
        Binding("r", "reload", "Reload",
                tooltip=f"read the runs folder and the queue now (it is read every "
                        f"{REFRESH_S:g} s)"),
        Binding("question_mark", "help", "Help", key_display="?",
                tooltip="this help; Esc closes it"),
        Binding("q", "leave", "Back", tooltip=LEAVE_HELP),
        Binding("escape", "clear", "Clear", show=False,
                tooltip="clear the filter and the marks"),
    ]

    def __init__(self, runs_dir: str, this_run: str | None = None,
                 leave_help: str | None = None, open_help: str | None = None) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.this_run = this_run          # the run to put the cursor on (the cockpit's own)
        self.leave_help = leave_help or LEAVE_HELP
        self.open_help = open_help or OPEN_HELP
        self.all_rows: list[ws.Row] = []
        self.shown: list[ws.Row] = []
        self.marked: list[str] = []
        self.colours: dict[str, int] = {}       # marked run -> its colour in the overlay
        self.filter_text = ""
        self.sort_column, self.sort_descending = "run", False
        self.queue: qu.Queue = qu.Queue()
        self.unlisted: list[str] = []          # what could not be read, one line each

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: text in a run's state, name, score or options",
                    id="filter")
        with Vertical():
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            yield PlotextPlot(id="overlay")
            yield Static("", id="queue-title")
            yield DataTable(id="queue", cursor_type="row")
        yield Static("", id="runs-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        table.add_columns(" ", "STATE", "RUN", "EPOCH", "BEST VALIDATION", "OPTIONS THAT DIFFER")
        self.query_one("#queue", DataTable).add_columns("#", "STATE", "OPTIONS", "RUN / WHY")
        self.action_reload()
        if self.this_run:
            self.move_to(self.this_run)
        table.focus()
        self.set_interval(REFRESH_S, self.refresh_rows)

    def refresh_rows(self) -> None:
        """The periodic read: the table and the queue redrawn only when something changed,
        the cursor kept on its run (not hidden from a filter being typed)."""
        if self.query_one("#filter", Input).has_focus or not self.is_current:
            return
        self.action_reload(only_if_changed=True)

    # -- data -------------------------------------------------------------------------------

    def _visible(self) -> list[ws.Row]:
        """The rows the filter lets through, in the sort's order."""
        rows = [r for r in self.all_rows if ws.matches(r, self.filter_text)]
        return ws.sort_rows(rows, self.sort_column, self.sort_descending)

    @staticmethod
    def _cells(rows: list[ws.Row]) -> list[tuple]:
        return [(r.key, r.state, r.run, r.epoch, str(r.best), r.options) for r in rows]

    def move_to(self, key: str | None) -> None:
        """The cursor on the row of ``key`` when it is shown."""
        keys = [os.path.abspath(r.key) if not r.key.startswith("queue:") else r.key
                for r in self.shown]
        key = os.path.abspath(key) if key and not key.startswith("queue:") else key
        if key in keys:
            self.query_one("#runs", DataTable).move_cursor(row=keys.index(key))

    def action_reload(self, only_if_changed: bool = False) -> None:
        before = (self._cells(self.shown), self.queue.entries)
        try:
            self.queue = qu.load(self.runs_dir)
        except LunaInputError as exc:
            self.say(str(exc))
            self.queue = qu.Queue()
        self.unlisted = []        # a run whose files cannot be read hides no other
        try:
            check_runs_dir(self.runs_dir)
        except LunaInputError as exc:
            self.unlisted.append(str(exc))
        found = list_runs_with_events(self.runs_dir, self.unlisted)
        self.all_rows = ws.rows(found, self.queue.entries)
        if only_if_changed and before == (self._cells(self._visible()), self.queue.entries):
            return
        row, queue_row = self.current(), self.query_one("#queue", DataTable).cursor_row
        self.refill()
        self.move_to(row.key if row is not None else None)
        self.fill_queue()
        if queue_row:
            self.query_one("#queue", DataTable).move_cursor(row=queue_row)

    def refill(self) -> None:
        self.shown = self._visible()
        table = self.query_one("#runs", DataTable)
        table.clear()
        for r in self.shown:
            mark = Text("●", style=f"rgb{self.colour(r.key)}") if r.key in self.marked \
                else Text(" ")
            table.add_row(mark, r.state, elide_run(r.run, self.run_room()), r.epoch, r.best,
                          r.options, key=r.key)
        arrow = "↓" if self.sort_descending else "↑"
        self.say(f"{len(self.shown)} of {len(self.all_rows)} · sorted by {self.sort_column} "
                 f"{arrow}" + (f" · filter '{self.filter_text}'" if self.filter_text else "")
                 + (f" · {len(self.marked)} marked" if self.marked else "")
                 + (f" · not listed: {self.unlisted[0]}" if self.unlisted else "")
                 + (f" (and {len(self.unlisted) - 1} more)" if len(self.unlisted) > 1 else ""))

    def run_room(self) -> int:
        """The RUN column's width: a long name is cut in its middle (keeping the comment's
        end) so that the scores stay on screen."""
        return max(RUN_MIN, min(RUN_MAX, self.app.size.width // 4))

    def on_resize(self) -> None:
        if self.all_rows:
            row = self.current()
            self.refill()
            self.move_to(row.key if row is not None else None)

    def fill_queue(self) -> None:
        table = self.query_one("#queue", DataTable)
        table.clear()
        for e in self.queue.entries:
            table.add_row(str(e.id), e.state, e.describe(), e.reason or e.run_dir or "",
                          key=str(e.id))
        waiting = sum(1 for e in self.queue.entries if e.state == qu.QUEUED)
        self.query_one("#queue-title", Static).update(
            f" Queue: {len(self.queue.entries)} entries, {waiting} waiting"
            + (" · halted" if self.queue.halt else "") + " · 'luna-tui queue run' works "
            "through it")

    def say(self, text: str) -> None:
        self.query_one("#runs-status", Static).update(text)

    def colour(self, key: str) -> tuple[int, int, int]:
        return ws.PALETTE[self.colours.get(key, 0)]

    def current(self) -> ws.Row | None:
        table = self.query_one("#runs", DataTable)
        if not self.shown or table.cursor_row is None:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    # -- keys -------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter_text = event.value
        self.refill()
        self.query_one("#runs", DataTable).focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        box.value, self.filter_text = "", ""
        box.remove_class("-shown")
        self.refill()
        self.query_one("#runs", DataTable).focus()

    def action_sort(self) -> None:
        """The next column; the same one again: the other way round."""
        k = ws.COLUMNS.index(self.sort_column)
        if self.sort_descending:
            self.sort_column, self.sort_descending = ws.COLUMNS[(k + 1) % len(ws.COLUMNS)], \
                False
        else:
            self.sort_descending = True
        self.refill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        columns = (None, "state", "run", "epoch", "best", "options")
        column = columns[event.column_index]
        if column is not None:
            same = column == self.sort_column
            self.sort_column = column
            self.sort_descending = not self.sort_descending if same else False
            self.refill()

    def action_mark(self) -> None:
        row = self.current()
        if row is None or row.history is None:
            return
        if row.key in self.marked:
            self.marked.remove(row.key)
            del self.colours[row.key]
        else:
            self.colours[row.key] = ws.free_colour(self.colours)
            self.marked.append(row.key)
        cursor = self.query_one("#runs", DataTable).cursor_row
        self.refill()
        self.query_one("#runs", DataTable).move_cursor(row=min(cursor + 1,
                                                               len(self.shown) - 1))

    def action_overlay(self) -> None:
        plot = self.query_one("#overlay", PlotextPlot)
        if plot.has_class("-shown"):
            plot.remove_class("-shown")
            return
        rows = [r for r in self.all_rows if r.key in self.marked and r.history is not None]
        if not rows:
            self.say("mark runs with space first (o overlays their validation curves)")
            return
        key, name = ws.overlay_key([r.history for r in rows])
        plt = plot.plt
        plt.clear_figure()
        plt.frame(False)
        for r in rows:
            pts = [(e.epoch, e.values.get(key)) for e in r.history.epochs
                   if e.values.get(key) is not None]
            if len(pts) == 1:      # one validation: a mark that shows, not one braille dot
                plt.scatter([pts[0][0]], [pts[0][1]], marker="●", color=self.colour(r.key),
                            label=f"{r.run[-22:]} (1 epoch)")
            elif pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], marker="braille",
                         color=self.colour(r.key), label=r.run[-28:])
        plt.title(f"{name} per epoch · {len(rows)} runs")
        plt.xlabel("epoch")
        plot.add_class("-shown")
        plot.refresh()

    def action_help(self) -> None:
        from luna_tui.screens.help import HelpScreen, key_rows

        keys = [(k, self.open_help if k == "Enter" else self.leave_help if k == "q" else text)
                for k, text in key_rows(self.BINDINGS)]
        self.app.push_screen(HelpScreen(keys, sections=[("Columns", list(COLUMN_HELP))]))

    def action_open(self) -> None:
        row = self.current()
        if row is None or row.history is None:
            return
        self.dismiss(("attach" if row.state in (ws.LIVE, ws.PAUSED) else "history", row.key))

    def action_leave(self) -> None:
        self.dismiss(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "runs":
            self.action_open()

    def action_queue_add(self) -> None:
        row = self.current()
        if row is None or row.history is None:
            self.say("select a run to queue a copy of its options")
            return
        argv = ws.options_argv(row.history.options)
        try:
            with qu.editing(self.runs_dir) as q:
                entry = q.add(argv)
        except LunaInputError as exc:
            self.say(str(exc))
            return
        self.say(f"queued #{entry.id}: {entry.describe()}")
        self.action_reload()

    def action_queue_remove(self) -> None:
        table = self.query_one("#queue", DataTable)
        if not self.queue.entries or table.cursor_row is None:
            return
        entry = self.queue.entries[min(table.cursor_row, len(self.queue.entries) - 1)]
        try:    # the queue as it is now, not as shown: the entry may have started since
            qu.remove(self.runs_dir, entry.id)
        except LunaInputError as exc:
            self.say(str(exc))
        else:
            self.say(f"removed #{entry.id}")
        self.action_reload()


class RunsApp(App[tuple[str, str] | None]):
    """`luna-tui runs --tui`: the runs screen on its own; returns what Enter chose."""

    TITLE = "luna-tui runs"
    ENABLE_COMMAND_PALETTE = False
    CSS_PATH = Path(__file__).with_name("cockpit.tcss")     # the modal screens' styles

    def __init__(self, runs_dir: str, this_run: str | None = None) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.runs = RunsScreen(runs_dir, this_run, leave_help="quit",
                               open_help="open the run in the cockpit (attached when live, its "
                                         "history when ended); q there comes back here")

    def on_mount(self) -> None:
        self.push_screen(self.runs, callback=self.exit)
