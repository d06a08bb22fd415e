"""The panes' bases: what the cockpit screen asks of every pane (``CockpitPane``), a text pane
that redraws cheaply, and one drawn from the last value it was shown (``MemoPane``), which
redraws only when what it draws from changed."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.widgets import Static

from luna_tui.model.layout import BORDER_ROWS


class CockpitPane:
    """What the cockpit screen (luna_tui.screens.cockpit) asks of a pane of the views table
    (luna_tui.model.views), mixed into the pane's widget before its Textual base. A pane
    overrides what it needs; the rest does nothing, or shows the snapshot."""

    #: The pane's own keys, their actions its own ``action_*``. The screen binds them, so that
    #: they work whatever has the focus; an action brings up the pane's view first where it
    #: says so (``bring_up``).
    KEYS: ClassVar[list[Binding]] = []

    @classmethod
    def for_cockpit(cls, screen, name: str):
        """The pane ``#name`` for the cockpit ``screen`` (a pane that needs the screen's
        options takes them here)."""
        return cls(id=name)

    def follow(self, snap, ui, now) -> None:
        """Show the run as ``snap`` has it (``ui``: the app's UiStatus, ``now``: the clock);
        the table's ``follows`` says when."""
        self.show(snap)

    def natural_rows(self, width: int, screen: Size) -> int:
        """The rows the pane needs at ``width`` on a screen of size ``screen``, its border
        included (the overview gives them while they fit)."""
        inner = max(10, width - 4)                  # border and padding
        try:
            rows = self.get_content_height(Size(width, screen.height), screen, inner)
        except Exception:  # noqa: BLE001 - a pane that cannot say: give it a few rows
            rows = 4
        return rows + BORDER_ROWS

    def laid_out(self, layout, width: int, height: int) -> None:
        """The screen (``width`` x ``height``) has given the panes their rows (``layout``, a
        luna_tui.model.layout.Layout)."""

    def opened(self, snap) -> None:
        """The pane's view was brought up (its key, or one of the pane's)."""

    def set_baseline(self, baseline) -> None:
        """A run to show beside this one (a RunHistory, luna_core.run.compare), or None."""

    def bring_up(self) -> bool:
        """Bring up the pane's view unless the pane is on screen; whether it had to."""
        return self.screen.bring_up(self.id)

    def in_view(self) -> bool:
        """Whether the pane is on screen: in its view, or zoomed."""
        return self.screen.showing(self.id)


class TextPane(Static):
    """``Static`` whose ``show_text`` skips Textual's layout pass (the costly part of a
    refresh) while the number of lines stays the same, as it does between most polls."""

    _line_count: int | None = None

    def show_text(self, text: Text) -> None:
        lines = text.plain.count("\n") + 1
        self.update(text, layout=lines != self._line_count)
        self._line_count = lines


class MemoPane(CockpitPane, TextPane):
    """A pane drawn from the values last given to ``show``. A subclass says what its drawing
    depends on (``memo_key``, the values and the width by default) and draws (``draw``); the
    pane draws again only when that key changed, and at its new width after a resize.
    ``forget()`` draws anew whatever the key (something outside the values changed)."""

    can_focus = True          # Tab moves here; z zooms the focused pane
    DRAW_WIDTH = 40           # the width to draw at before the pane has one

    _shown: tuple | None = None
    _memo: tuple | None = None

    def show(self, *values) -> None:
        self._shown = values
        self.redraw()

    def redraw(self) -> None:
        if self._shown is None:
            return
        width = self.content_size.width or self.DRAW_WIDTH
        key = self.memo_key(width, *self._shown)
        if key == self._memo:
            return
        self._memo = key
        self.draw(width, *self._shown)

    def forget(self) -> None:
        self._memo = None
        self.redraw()

    def memo_key(self, width: int, *values) -> tuple:
        return (width, *values)

    def draw(self, width: int, *values) -> None:
        raise NotImplementedError

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)
