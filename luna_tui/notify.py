"""The cockpit's notifications: what is new in the run (luna_tui.model.news) as toasts, at most
``MAX_TOASTS`` at once; the alarms and the run's end also call the user back through the
terminal (the bell and a desktop notification, unless --quiet)."""

from __future__ import annotations

import os
import time
from typing import Protocol

from luna_core.run import events as ev
from luna_core.run.runs import CRASHED
from luna_tui.model.alarm import BEL, desktop_notification
from luna_tui.model.endings import ENDED_WORDS, analysis_goes_on, resume_command
from luna_tui.model.formatting import short_path
from luna_tui.model.news import SnapshotNews
from luna_tui.model.snapshot import RunSnapshot

#: Notifications on screen at once, at most.
MAX_TOASTS = 2
#: Checkpoints announced with a toast: the ones asked for, and the alarm's.
TOASTED_CHECKPOINTS = ("request", "nonfinite")


class ToastHost(Protocol):
    """All the Notifier needs of the app: Textual's toasts and a write to the terminal."""

    def notify(self, message: str, *, title: str, severity: str, timeout: float) -> None: ...

    def clear_notifications(self) -> None: ...

    def terminal_write(self, data: str) -> None: ...


class Notifier:
    """Toasts and call-backs for one app (its ``ToastHost`` side only)."""

    def __init__(self, host: ToastHost, quiet: bool = False) -> None:
        self.host = host
        self.quiet = quiet
        self.toasts: list[tuple[float, tuple[str, str, str]]] = []   # (expires, notify args)
        self._news = SnapshotNews()
        self._ended_seen: bool | None = None

    def toast(self, message: str, *, title: str = "", severity: str = "information",
              timeout: float = 5.0) -> None:
        """``notify``, with at most ``MAX_TOASTS`` on screen: the oldest goes first."""
        now = time.monotonic()
        live = [t for t in self.toasts if t[0] > now]
        if len(live) >= MAX_TOASTS:
            self.host.clear_notifications()
            live = live[len(live) - MAX_TOASTS + 1:]
            for expires, (text, head, level) in live:
                self.host.notify(text, title=head, severity=level,
                                timeout=max(0.5, expires - now))
        live.append((now + timeout, (message, title, severity)))
        self.toasts = live
        self.host.notify(message, title=title, severity=severity, timeout=timeout)

    def announce(self, snap: RunSnapshot, *, failure: str | None,
                 attached_end: bool) -> list:
        """Notifications for what arrived since the last look (not for what was there);
        returns the checkpoints saved since. ``attached_end``: tell how a watched run ended."""
        ended_before, self._ended_seen = self._ended_seen, snap.ended
        checkpoints, notices = self._news.since_last(snap, failure)
        for n in notices:
            self.toast(n.message, title=n.title, severity=n.severity, timeout=n.timeout)
            self.call_user(n.title, n.message)
        if ended_before is False and snap.ended:
            if attached_end:
                self._attached_end(snap)
            self.call_user(f"Run {snap.state}", snap.run_dir or "luna-tui")
        return checkpoints

    def _attached_end(self, snap: RunSnapshot) -> None:
        if snap.state == CRASHED:
            again = (analysis_goes_on(snap.run_dir) if snap.task == "analysis"
                     else f"Resume with: {resume_command(snap.run_dir)}")
            self.toast(f"{snap.state_detail}. {again}", title="Run ended unexpectedly",
                       severity="error", timeout=30)
        elif snap.state in (ev.FINISHED, ev.STOPPED):
            self.toast(ENDED_WORDS[snap.state] + "; the cockpit is read-only now (q exits)",
                       title=f"Run {snap.state}", timeout=10)

    def checkpoint_saved(self, path: str, reason: str, run_dir: str) -> None:
        """A toast only for a checkpoint someone asked for (and the alarm's); the epoch-end
        ones are in the progress pane and the log."""
        if reason in TOASTED_CHECKPOINTS:
            self.toast(short_path(path, run_dir), title=f"Checkpoint saved ({reason})",
                       timeout=8)

    def call_user(self, title: str, body: str) -> None:
        """The bell and a desktop notification (unless --quiet)."""
        if not self.quiet:
            self.host.terminal_write(BEL + desktop_notification(
                title, body, in_tmux=bool(os.environ.get("TMUX"))))
