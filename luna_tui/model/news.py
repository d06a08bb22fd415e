"""What arrived in the snapshot since the cockpit last looked: new checkpoints, a non-finite
loss, a failure of the loop, the NODULES MISSED alarm turning on, a straggler rank that
has held for a minute. The cockpit turns them into
notifications (checkpoints only when asked for). The first look only takes note of what is
there, so the history a cockpit attaches to never notifies. No Textual here."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run.alerts import MISSED, MISSED_REMEDY, missed_found
from luna_core.run.events import FAILED, CheckpointSaved
from luna_core.run.straggler import ALERT_AFTER_S
from luna_tui.model.snapshot import RunSnapshot


@dataclass(frozen=True)
class Notice:
    """A notification to show (the arguments of Textual's ``App.notify``)."""

    message: str
    title: str
    severity: str = "information"
    timeout: float = 5.0


class SnapshotNews:
    """``since_last(snap)``: what is new since the previous call; the first call only takes
    note of what is there."""

    def __init__(self) -> None:
        self._checkpoints: int | None = None
        self._nonfinite: int | None = None
        self._state: str | None = None
        self._alarm = False
        self._straggler: int | None = None     # the rank a notice named

    def since_last(self, snap: RunSnapshot, failure: str | None = None
                   ) -> tuple[list[CheckpointSaved], list[Notice]]:
        """(checkpoints saved since, notices); ``failure``: the cockpit already shows one,
        so a failed state is not announced again."""
        if self._checkpoints is None:
            self._checkpoints = snap.checkpoint_total
            self._nonfinite = snap.nonfinite_count
            self._state = snap.state
            self._alarm = _alarm(snap) is not None
            return [], []
        checkpoints: list[CheckpointSaved] = []
        notices: list[Notice] = []
        new = snap.checkpoint_total - self._checkpoints
        if new > 0:
            self._checkpoints = snap.checkpoint_total
            checkpoints = list(snap.checkpoints[-min(new, len(snap.checkpoints)):])
        if snap.nonfinite_count != self._nonfinite:
            self._nonfinite = snap.nonfinite_count
            nf = snap.last_nonfinite
            if nf is not None:
                what = "run paused" if nf.action == "pause" else f"action: {nf.action}"
                notices.append(Notice(
                    f"Non-finite loss at E{nf.epoch} {nf.phase} batch {nf.batch_ndx}"
                    f" — {what}. c checkpoints, p resumes, q quits.",
                    title="Non-finite loss", severity="error", timeout=15))
        alarm = _alarm(snap)
        if alarm is not None and not self._alarm:
            notices.append(Notice(alarm, title=MISSED, severity="warning",
                                  timeout=15))
        self._alarm = alarm is not None
        held = _straggler(snap)
        if held is not None and held[0] != self._straggler:
            notices.append(Notice(held[1], title="Straggler", severity="warning", timeout=15))
        self._straggler = held[0] if held is not None else (
            self._straggler if snap.straggler is not None else None)
        if snap.state != self._state:
            self._state = snap.state
            if snap.state == FAILED and failure is None:
                notices.append(Notice(snap.state_detail or "the training loop failed",
                                      title="Training failed", severity="error", timeout=30))
        return checkpoints, notices


def _straggler(snap: RunSnapshot) -> tuple[int, str] | None:
    """(rank, what to say) when a straggler has been named for ALERT_AFTER_S or more."""
    s = snap.straggler
    if s is None or float(s.get("named_for_s") or 0.0) < ALERT_AFTER_S:
        return None
    return int(s["rank"]), (f"{s['reason']} for {float(s['named_for_s']):.0f} s: the job runs "
                            "at its pace (8 shows every rank)")


def _alarm(snap: RunSnapshot) -> str | None:
    """What the NODULES MISSED alarm says, or None when it is off."""
    for phase in ("val", "trn"):
        pm = snap.metrics.get(phase)
        if pm is not None and pm.pos_alarm:
            return (f"{phase} {missed_found(pm.epoch, pm.pos_correct, pm.pos_count)} while "
                    f"{pm.all_correct:,} of {pm.all_count:,} are right overall. Try "
                    f"{MISSED_REMEDY}")
    return None
