"""The panes' two bases: a text pane that redraws cheaply, and one drawn from the last value it
was shown (``MemoPane``), which redraws only when what it draws from changed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TextPane(Static):
    """``Static`` whose ``show_text`` skips Textual's layout pass (the costly part of a
    refresh) while the number of lines stays the same, as it does between most polls."""

    _line_count: int | None = None

    def show_text(self, text: Text) -> None:
        lines = text.plain.count("\n") + 1
        self.update(text, layout=lines != self._line_count)
        self._line_count = lines


class MemoPane(TextPane):
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
