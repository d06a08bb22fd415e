"""What arrived in the snapshot since the cockpit last looked: new checkpoints, a non-finite
loss, a failure of the loop. The cockpit turns them into notifications. No Textual here."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run.events import FAILED, CheckpointSaved
from luna_tui.snapshot import RunSnapshot


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

    def since_last(self, snap: RunSnapshot, failure: str | None = None
                   ) -> tuple[list[CheckpointSaved], list[Notice]]:
        """(checkpoints saved since, notices); ``failure``: the cockpit already shows one,
        so a failed state is not announced again."""
        if self._checkpoints is None:
            self._checkpoints = snap.checkpoint_total
            self._nonfinite = snap.nonfinite_count
            self._state = snap.state
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
        if snap.state != self._state:
            self._state = snap.state
            if snap.state == FAILED and failure is None:
                notices.append(Notice(snap.state_detail or "the training loop failed",
                                      title="Training failed", severity="error", timeout=30))
        return checkpoints, notices
