"""The help screen (`?`): the keys, built from the bindings themselves (each binding's tooltip
is its help line; bindings with the same line share a row), and what each pane shows (the
views table's help of each pane)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from luna_tui.model import views

#: Not a pane, but said with them.
NOTIFICATIONS = ("Notifications", "only for what you asked for (a checkpoint, a pause) and for "
                                  "alarms (non-finite loss, a failure, nodules missed); at most "
                                  "two at a time. Epoch-end checkpoints are in the progress pane "
                                  "and the log.")


#: What differs when the run trains --task seg (said first in its help).
SEG_ROWS = [
    ("Pixels", "the class table of a --task seg run: loss, TP/FN/FP pixels as % of the "
               "label's (FP passes 100 % on whole slices), precision, recall, F1, the slices' "
               "mean Dice; best.pt by recall"),
    ("Diagnostics", "none for seg: it has no candidate ranking (FROC, PR curve, histograms)"),
    ("Examples", "the slices with the most nodule pixels missed / falsely marked (k); pixels "
                 "found green, missed magenta, falsely marked amber; Enter: a close-up and "
                 "the whole slice"),
]


def pane_rows() -> list[tuple[str, str]]:
    """(title, what it shows) per pane of the views table (luna_tui.model.views), in its
    order, and the notifications."""
    return [*((spec.title, views.pane_help(spec)) for spec in views.PANES), NOTIFICATIONS]


#: What differs when the run trains --task malignancy.
MALIGNANCY_ROWS = [
    ("Per class", "malignant against the rest: in training \"other\" is benign nodules and "
                  "non-nodules, in validation benign nodules; under it the AUC with its 95 % "
                  "interval beside the diameter alone, the baseline to beat; best.pt by AUC"),
    ("Alarms", "no NODULES MISSED: that is the nodule classifier's"),
    ("Examples", "the malignant nodules graded benign, the benign ones graded malignant, the "
                 "malignant ones graded best (k)"),
]
#: An analysis (`luna-tui analyze`) trains nothing.
ANALYSIS_ROWS = [
    ("Progress", "the series analysed of those asked for, with the time left"),
    ("Detection", "in the per-class pane's place: the challenge's detection CPM over every "
                  "annotated nodule beside the candidate list's, the nodules found, false "
                  "positives per scan, and the book's table"),
    ("Trends", "none: an analysis trains nothing; each series' line is in the Log"),
]
TASK_ROWS = {"seg": SEG_ROWS, "malignancy": MALIGNANCY_ROWS, "analysis": ANALYSIS_ROWS}
TASK_SECTION = "This run trains --task"


def sections_for(task: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The help's sections for a run of ``task``: what differs from the classifier first."""
    panes = [("Panes", pane_rows())]
    rows = TASK_ROWS.get(task)
    title = ("This run is an analysis (luna-tui analyze)" if task == "analysis"
             else f"{TASK_SECTION} {task}")
    return [(title, rows), *panes] if rows else panes


_KEY_NAMES = {"left_square_bracket": "[", "right_square_bracket": "]", "question_mark": "?",
              "tab": "Tab", "escape": "Esc", "enter": "Enter", "comma": ",",
              "full_stop": ".", "pagedown": "PgDn", "pageup": "PgUp", "slash": "/",
              "space": "Space"}


def key_name(key: str) -> str:
    """'ctrl+c' -> 'Ctrl+C', 'left_square_bracket' -> '['."""
    if key in _KEY_NAMES:
        return _KEY_NAMES[key]
    if key.startswith("ctrl+"):
        return "Ctrl+" + key[5:].upper()
    return key


def key_rows(bindings: Iterable[Binding]) -> list[tuple[str, str]]:
    """(keys, what they do) per help line, in the bindings' order; a binding without a
    tooltip is not in the help (a variant of a key already there)."""
    rows: dict[str, list[str]] = {}
    for binding in bindings:
        if binding.tooltip:
            keys = rows.setdefault(binding.tooltip, [])
            if key_name(binding.key) not in keys:
                keys.append(key_name(binding.key))
    return [(" ".join(keys), text) for text, keys in rows.items()]


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, expand=True, padding=(0, 1, 0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for key, text in rows:
        table.add_row(key, text)
    return table


def help_renderable(keys: list[tuple[str, str]],
                    sections: list[tuple[str, list[tuple[str, str]]]] | None = None) -> Group:
    """The keys, then ``sections`` (title, rows) — by default what each pane shows; a
    section on what this run's task changes ("This run trains ...") comes before the keys."""
    sections = sections if sections is not None else [("Panes", pane_rows())]
    lead = [s for s in sections if s[0].startswith("This run ")]
    parts = []
    for title, rows in lead:
        parts += [Text(title, style="bold underline"), _table(rows), Text("")]
    sections = [s for s in sections if s not in lead]
    parts += [Text("Keys", style="bold underline"), _table(keys)]
    for title, rows in sections:
        parts += [Text(""), Text(title, style="bold underline"), _table(rows)]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    AUTO_FOCUS = "#help-box"      # so ↑ ↓ PgUp PgDn Home End scroll it at once (and the wheel)
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, keys: list[tuple[str, str]],
                 sections: list[tuple[str, list[tuple[str, str]]]] | None = None) -> None:
        super().__init__()
        self.keys, self.sections = keys, sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help"
            yield Static(help_renderable(self.keys, self.sections), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
