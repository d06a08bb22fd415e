"""The help screen (`?`): keys and what each pane shows."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

VIEW_KEYS = [
    ("1 2 3 4", "views: 1 all panes (those that do not fit show one line), 2 the trend plots, "
                "3 the log, 4 system and GPU"),
    ("z", "zoom the focused pane to the whole screen (the trend plots if none); z again "
          "goes back"),
    ("s y x", "plots: s smoothing of the batch loss on/off (EMA 0.9), y log scale on/off, "
              "x epochs or training samples"),
    ("b", "pick a baseline run: its validation curves beside this run's, and in the class "
          "table whether this run is ahead at the same number of training samples"),
    ("[ ]", "halve / double the learning rate (asks first, shows old and new); the progress "
            "pane shows the current lr and momentum"),
    ("Tab", "move the focus between the panes"),
    ("l", "jump to the log (its own view if it does not fit), then ↑ ↓ PgUp PgDn scroll it"),
]
KEYS = [
    ("p", "pause / resume the training loop (at the next batch boundary)"),
    ("c", "save a checkpoint now; a notification names the file"),
    *VIEW_KEYS,
    ("q", "quit: asks first (y or Enter); the loop stops at a batch boundary, "
          "checkpoints, and the cockpit exits"),
    ("Ctrl+C", "quit without asking (still stops cleanly and checkpoints)"),
    ("?", "this help; Esc closes it"),
]
ATTACH_KEYS = [
    ("p", "pause / resume the run (at its next batch boundary); every attached cockpit "
          "sees it"),
    ("c", "ask the run to save a checkpoint; a notification names the file"),
    ("d", "detach now: the run goes on (luna-tui attach RUN_DIR to come back)"),
    ("q", "leave: detach (the default; the run goes on) or stop the run (it checkpoints, "
          "then stops)"),
    *VIEW_KEYS,
    ("Ctrl+C", "detach without asking (the run goes on)"),
    ("?", "this help; Esc closes it"),
]
PANES = [
    ("Progress", "state, epoch, batch, samples/s; when the phase and the run end. ETAs use "
                 "active time only (paused time never counts); ≈ marks a guess."),
    ("Per class", "latest epoch for trn and val: loss, % correct, k of n; precision, recall "
                  "and F1 of the positive class. A NODULES MISSED banner appears when 'all' "
                  "looks excellent but nodules are almost never found."),
    ("Trends", "live training loss per batch (smoothed, the raw values dotted behind; ▲ marks "
               "values clipped at the top); loss/all, loss/pos and % of nodules correct per "
               "epoch (orange trn, blue val; a marker per series). Titles: the latest value "
               "and the best so far."),
    ("System", "CPU, RAM, this process and its loader workers; GPUs through NVML."),
    ("Bottleneck", "share of recent batch time spent waiting for data vs computing."),
    ("Log", "the training loop's log lines."),
    ("Notifications", "only for what you asked for (a checkpoint, a pause) and for alarms "
                      "(non-finite loss, a failure, nodules missed); at most two at a time. "
                      "Epoch-end checkpoints are in the progress pane and the log."),
]


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1, 0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for key, text in rows:
        table.add_row(key, text)
    return table


def help_renderable(keys: list[tuple[str, str]] | None = None) -> Group:
    return Group(Text("Keys", style="bold underline"), _table(keys or KEYS), Text(""),
                 Text("Panes", style="bold underline"), _table(PANES))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, keys: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help"
            yield Static(help_renderable(self.keys), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
