"""`b`: pick a baseline run to compare the live one with (its curves in the trend plots, and
ahead / behind in the class table)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from luna_core.run.compare import best_cpm_text, best_text, history_from_events
from luna_core.run.metric_catalog import CPM, RECALL
from luna_core.run.runs import list_runs_with_events

NONE = "__none__"


class BaselinePicker(ModalScreen[str | None]):
    """The runs under ``runs_dir`` (newest first) but this one; Enter picks, Esc keeps."""

    BINDINGS = [Binding("escape", "close", "Close")]
    AUTO_FOCUS = "OptionList"

    def __init__(self, runs_dir: str, this_run: str) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.this_run = this_run

    def compose(self) -> ComposeResult:
        options = [Option("no baseline", id=NONE)]
        for run, events in reversed(list_runs_with_events(self.runs_dir)):
            if run.run_dir == self.this_run or not run.run_dir:
                continue
            h = history_from_events(run.run_dir, events)
            best = (f"best CPM {best_cpm_text(h)}" if h.best(CPM.key)
                    else f"best recall {best_text(h, RECALL.key, digits=3)}")
            options.append(Option(f"{run.run_dir}  {run.state}  {len(h.epochs)} epoch(s)  "
                                  f"{best}", id=run.run_dir))
        with Vertical(id="baseline-box") as box:
            box.border_title = f"Baseline: a run under {self.runs_dir}"
            if len(options) == 1:
                yield Static(f"no other runs under {self.runs_dir}")
            yield OptionList(*options, id="baseline-list")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss("" if event.option.id == NONE else event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)
