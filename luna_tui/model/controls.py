"""What the cockpit's keys may do now, and the command that waits for the run to act on it.
No Textual here: the app asks ``allowed`` for each key, and shows ``ui_status``."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run import events as ev
from luna_tui.model import summaries
from luna_tui.model.snapshot import RunSnapshot

#: Keys that steer the run: refused (with the reason) while the link is read-only.
STEERING = ("pause", "resume", "checkpoint", "steer_lr")
#: Actions of one kind of link only.
LOCAL_ONLY = ("request_quit", "quit_now")
ATTACHED_ONLY = ("leave", "detach")

REQUEST_WORDS = {"pause": "pause requested — the loop pauses after the current batch",
                 "resume": "resume requested",
                 "checkpoint": "checkpoint requested — saved after the current batch"}


@dataclass(frozen=True)
class UiStatus:
    """What the app knows that the event stream does not."""

    request: str | None = None       # e.g. "pause requested"
    quitting: bool = False
    failure: str | None = None       # the trainer thread raised (what, where)
    read_only: str | None = None     # attached, but commands cannot reach the run: why
    title: str = "LUNA cockpit"      # the pane's title, before the run directory


class RunControls:
    """The keys' state over one link: a command sent and not yet acted on (``request``), why
    the run cannot be steered from here (``read_only``), and whether a stop was asked for."""

    def __init__(self, attached: bool) -> None:
        self.attached = attached
        self.request: str | None = None      # "pause" / "resume" / "checkpoint"
        self.read_only: str | None = None
        self.quitting = False

    def applies(self, action: str) -> bool:
        """Whether ``action`` belongs to this kind of link at all (the help lists only
        those)."""
        if action in LOCAL_ONLY:
            return not self.attached
        if action in ATTACHED_ONLY:
            return self.attached
        return True

    def paused(self, snap: RunSnapshot) -> bool:
        """Paused, or about to be: a request counts before the run acts on it."""
        if self.request == "pause":
            return True
        if self.request == "resume":
            return False
        return snap.state == ev.PAUSED

    def allowed(self, action: str, snap: RunSnapshot, run_over: bool) -> bool:
        if not self.applies(action):
            return False
        if action == "read_only":
            return self.read_only is not None and not self.quitting
        if action in STEERING and self.read_only is not None:
            return False
        active = not run_over and not self.quitting
        if action == "pause":
            return active and not self.paused(snap)
        if action == "resume":
            return active and self.paused(snap)
        if action in ("checkpoint", "steer_lr"):
            return active
        return True

    def settle(self, snap: RunSnapshot) -> str | None:
        """Forget a request the run has acted on; returns what to tell (a pause taken)."""
        told = None
        if self.request == "pause" and (snap.state == ev.PAUSED or snap.ended):
            if snap.state == ev.PAUSED:
                told = f"at {summaries.position(snap)} · p resumes"
            self.request = None
        elif self.request == "resume" and snap.state != ev.PAUSED:
            self.request = None
        elif self.request is not None and snap.ended:
            self.request = None
        return told

    def ui_status(self, run_over: bool, failure: str | None, title: str) -> UiStatus:
        return UiStatus(request=REQUEST_WORDS.get(self.request or ""),
                        quitting=self.quitting and not run_over, failure=failure,
                        read_only=self.read_only, title=title)

    def key(self, snap: RunSnapshot, run_over: bool) -> tuple:
        """Changes whenever the keys that act may have changed."""
        return (snap.state, self.request, self.quitting, run_over, self.read_only)
