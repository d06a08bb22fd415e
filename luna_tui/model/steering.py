"""What the cockpit's keys may do now, and the command that waits for the run to act on it.
No Textual here: the app asks ``allowed`` for each key, and shows ``ui_status``.

The keys that steer the run are bound once each, from luna_core.run.command_table.COMMANDS, as the
action ``command(NAME[, ARGUMENT])``; their gate comes from the same table: on a read-only
link a command that must not be sent from one still acts, to say why (the footer does not
offer it); otherwise it acts while the run goes on and, for pause / resume, only while the run
is not paused / paused."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run import events as ev
from luna_core.run.command_table import COMMANDS, CommandSpec, command_spec
from luna_tui.model import pane_lines
from luna_tui.model.snapshot import RunSnapshot

#: The action of every key that sends a command: ``command('pause')``, ``command('set', 2.0)``.
COMMAND_ACTION = "command"
#: Actions of one kind of link only.
LOCAL_ONLY = ("request_quit", "quit_now")
ATTACHED_ONLY = ("leave", "detach")


@dataclass(frozen=True)
class UiStatus:
    """What the app knows that the event stream does not."""

    request: str | None = None       # e.g. "pause requested"
    quitting: bool = False
    failure: str | None = None       # the trainer thread raised (what, where)
    read_only: str | None = None     # attached, but commands cannot reach the run: why
    title: str = "LUNA cockpit"      # the pane's title, before the run directory


class Steering:
    """The keys' state over one link: a command sent and not yet acted on (``request``), why
    the run cannot be steered from here (``read_only``), and whether a stop was asked for.
    (Not luna_core.train.run_flags.RunControl: that one is the loop's side.)"""

    def __init__(self, attached: bool) -> None:
        self.attached = attached
        self.request: str | None = None      # a command's word: "pause", "checkpoint", ...
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

    def _pending(self) -> bool | None:
        """Whether the run is paused once it acts on the request waiting: a command that means
        something only while (not) paused changes just that (pause, resume); None: no request
        that does."""
        spec = command_spec(self.request) if self.request else None
        return None if spec is None or spec.paused is None else not spec.paused

    def paused(self, snap: RunSnapshot) -> bool:
        """Paused, or about to be: a request counts before the run acts on it."""
        pending = self._pending()
        return snap.state == ev.PAUSED if pending is None else pending

    def refuses(self, spec: CommandSpec) -> bool:
        """The link is read-only and ``spec`` is a command it must not send."""
        return self.read_only is not None and not spec.read_only_ok

    def acts(self, spec: CommandSpec, snap: RunSnapshot, run_over: bool) -> bool:
        """Whether the key of ``spec`` acts now: refused, it says why (unless the cockpit is
        quitting); else while the run goes on and the command means something (the table's
        ``paused``)."""
        if self.refuses(spec):
            return not self.quitting
        if run_over or self.quitting:
            return False
        return spec.means_something(self.paused(snap))

    def allowed(self, action: str, parameters: tuple, snap: RunSnapshot,
                run_over: bool) -> bool:
        """Textual's ``check_action``: whether the key bound to ``action`` acts now."""
        if not self.applies(action):
            return False
        if action == COMMAND_ACTION:
            return self.acts(command_spec(str(parameters[0])), snap, run_over)
        return True

    def settle(self, snap: RunSnapshot) -> str | None:
        """Forget a request the run has acted on (or can no longer act on: it ended); returns
        what to tell (a pause taken). A checkpoint's request is settled by its checkpoint."""
        if self.request is None:
            return None
        pending, paused = self._pending(), snap.state == ev.PAUSED
        if not snap.ended and (pending is None or pending != paused):
            return None
        self.request = None
        if pending and paused:
            resume_key = next(spec.keys[0] for spec in COMMANDS if spec.paused)
            return (f"at {pane_lines.position(snap)} · {resume_key.display or resume_key.key} "
                    f"resumes")
        return None

    def ui_status(self, run_over: bool, failure: str | None, title: str) -> UiStatus:
        request = command_spec(self.request).request if self.request else None
        return UiStatus(request=request, quitting=self.quitting and not run_over,
                        failure=failure, read_only=self.read_only, title=title)

    def key(self, snap: RunSnapshot, run_over: bool) -> tuple:
        """Changes whenever the keys that act may have changed."""
        return (snap.state, self.request, self.quitting, run_over, self.read_only)
