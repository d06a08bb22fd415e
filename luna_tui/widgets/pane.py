"""A text pane that redraws cheaply: a layout pass only when its height may change."""

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
