"""Log pane: the training loop's log lines, scrollable (focus it, then arrows / PgUp / PgDn)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo

from rich.text import Text
from textual.widgets import RichLog

from luna_tui.model.snapshot import LogLine, RunSnapshot
from luna_tui.widgets.pane import CockpitPane

LEVEL_STYLE = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}

LEVEL_LABEL = {"WARNING": "WARN", "CRITICAL": "CRIT"}


def format_line(line: LogLine, tz: tzinfo | None) -> Text:
    when = datetime.fromtimestamp(line.t, tz=tz).strftime("%H:%M:%S")
    style = LEVEL_STYLE.get(line.level, "")
    text = Text(f"{when} ", style="dim")
    text.append(f"{LEVEL_LABEL.get(line.level, line.level[:5]):<5} ", style=style or "dim")
    text.append(line.message, style=style)
    return text


class LogPane(CockpitPane, RichLog):
    """Appends only the lines that arrived since the last poll, wrapped at the pane's width;
    when the width changes (a view, the zoom, the terminal) every line is laid out again, so
    lines that arrived while the pane was narrow do not stay wrapped narrow."""

    def __init__(self, *, tz: Callable[[], tzinfo | None] | None = None,
                 max_lines: int = 2000, **kwargs) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False,
                         auto_scroll=True, min_width=20, **kwargs)
        self.border_title = "Log"
        self._seen = 0
        self._tz = tz or (lambda: None)
        self._texts: deque[Text] = deque(maxlen=max_lines)   # what was written, unwrapped
        self._laid_out_at: int | None = None                  # the width they were wrapped at

    @classmethod
    def for_cockpit(cls, screen, name: str) -> LogPane:
        return cls(id=name, tz=lambda: screen.clock().tzinfo)

    def laid_out(self, layout, width: int, height: int) -> None:
        self.call_after_refresh(self.scroll_end, animate=False)   # its newest lines in view

    def show(self, snap: RunSnapshot) -> None:
        new = snap.log_total - self._seen
        if new <= 0:
            return
        self._seen = snap.log_total
        tz = self._tz()
        for line in snap.log[-min(new, len(snap.log)):]:
            self._write(format_line(line, tz))

    def add_local(self, message: str, level: str = "INFO", t: float = 0.0) -> None:
        """A line from the cockpit itself (not from the loop)."""
        self._write(format_line(LogLine(t=t, level=level, message=message), self._tz()))

    def _write(self, text: Text) -> None:
        self._texts.append(text)
        self._write_wrapped(text)

    def _write_wrapped(self, text: Text) -> None:
        # wrap at the pane's width (RichLog would otherwise measure against the console)
        width = self.scrollable_content_region.width
        self._laid_out_at = width
        self.write(text, width=width if width >= 20 else None)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if self._texts and width != self._laid_out_at:
            self.clear()
            for text in self._texts:
                self._write_wrapped(text)
            self.scroll_end(animate=False)
