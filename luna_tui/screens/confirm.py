"""The quit confirmation: `y` or Enter stops the run (checkpoint first) and quits."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


def yes_no(yes: str) -> list[Binding]:
    """y / Enter answer yes, n / Esc no."""
    return [Binding("y", "answer(True)", yes), Binding("enter", "answer(True)", "Yes", show=False),
            Binding("n", "answer(False)", "No"),
            Binding("escape", "answer(False)", "Cancel", show=False)]


class ConfirmQuit(ModalScreen[bool]):
    BINDINGS = [*yes_no("Yes, quit"), Binding("q", "answer(False)", "No", show=False)]

    def __init__(self, running: bool = True) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static("Quit the cockpit?", id="confirm-title")
            if self.running:
                yield Static("Training stops at the next batch boundary, saves a checkpoint, "
                             "and the cockpit exits.", id="confirm-body")
            yield Static("[b]y[/b] / [b]Enter[/b] quit    [b]n[/b] / [b]Esc[/b] keep going",
                         id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AttachQuit(ModalScreen[str | None]):
    """Leaving an attached cockpit: detach (the default; the run goes on) or stop the run.

    Dismisses with "detach", "stop", or None (keep watching)."""

    BINDINGS = [
        Binding("d", "answer('detach')", "Detach"),
        Binding("enter", "answer('detach')", "Detach", show=False),
        Binding("s", "answer('stop')", "Stop the run"),
        Binding("n", "answer(None)", "Cancel"),
        Binding("escape", "answer(None)", "Cancel", show=False),
        Binding("q", "answer(None)", "Cancel", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static("Leave the cockpit?", id="confirm-title")
            yield Static("[b]d[/b] / [b]Enter[/b] detach — the run goes on (default)\n"
                         "[b]s[/b] stop the run — it saves a checkpoint, then stops",
                         id="confirm-body")
            yield Static("[b]n[/b] / [b]Esc[/b] keep watching", id="confirm-keys")

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)


class ConfirmSetting(ModalScreen[bool]):
    """`[` / `]`: halve or double the learning rate, after a look at the old and new values."""

    BINDINGS = yes_no("Yes, change it")

    def __init__(self, old_lr: float, new_lr: float, momentum: float | None) -> None:
        super().__init__()
        self.old_lr, self.new_lr, self.momentum = old_lr, new_lr, momentum

    def compose(self) -> ComposeResult:
        kept = "" if self.momentum is None else f" (momentum {self.momentum:g} stays)"
        with Vertical(id="confirm-box"):
            yield Static("Change the learning rate?", id="confirm-title")
            yield Static(f"lr {self.old_lr:g} → [b]{self.new_lr:g}[/b]{kept}, from the next "
                         "batch on; the run records it and its checkpoints keep it.",
                         id="confirm-body")
            yield Static("[b]y[/b] / [b]Enter[/b] change    [b]n[/b] / [b]Esc[/b] keep it",
                         id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @classmethod
    def ask(cls, app, old_lr: float, new_lr: float, momentum: float | None, send) -> None:
        """Ask on ``app``; once confirmed, ``send(new_lr)`` and say so."""
        def answered(yes: bool | None) -> None:
            if yes:
                send(new_lr)
                app.toast(f"lr {old_lr:g} → {new_lr:g} from the next batch",
                          title="lr change sent", timeout=4)

        app.push_screen(cls(old_lr, new_lr, momentum), answered)
