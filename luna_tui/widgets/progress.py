"""Progress pane: run state, epoch, phase, batch, speed, ETAs, and what needs attention."""

from __future__ import annotations

import io
from datetime import datetime

from rich.console import Console
from rich.text import Text
from textual.geometry import Size

from luna_core.run.events import (
    FAILED,
    FINISHED,
    PAUSED,
    STARTING,
    STOPPED,
    STOPPING,
    TRAINING,
    VALIDATING,
)
from luna_core.run.metric_catalog import CPM
from luna_core.run.runs import CRASHED, ENDED_STATES
from luna_tui.model import formatting as fmt
from luna_tui.model.endings import analysis_goes_on, resume_command
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.steering import UiStatus
from luna_tui.widgets.pane import MemoPane

STATE_LABEL = {
    STARTING: "STARTING",
    TRAINING: "TRAINING",
    VALIDATING: "VALIDATING",
    PAUSED: "PAUSED",
    STOPPING: "STOPPING",
    FINISHED: "FINISHED",
    STOPPED: "STOPPED",
    FAILED: "FAILED",
    CRASHED: "ENDED UNEXPECTEDLY",
}
STATE_STYLE = {
    STARTING: "bold reverse",
    TRAINING: "bold black on green",
    VALIDATING: "bold black on cyan",
    PAUSED: "bold black on yellow",
    STOPPING: "bold black on magenta",
    FINISHED: "bold black on green",
    STOPPED: "bold reverse",
    FAILED: "bold white on red",
    CRASHED: "bold white on red",
}
PHASE_NAME = {"trn": "training", "val": "validation"}


def state_of(snap: RunSnapshot, ui: UiStatus) -> str:
    if ui.failure and snap.state not in (FAILED,):
        return FAILED
    if ui.quitting and snap.state not in ENDED_STATES:
        return STOPPING
    return snap.state


def render_progress(snap: RunSnapshot, now: datetime, width: int, ui: UiStatus) -> Text:
    """The pane's own lines at ``width`` (``add_details`` fills rows to spare)."""
    width = max(20, width)
    state = state_of(snap, ui)
    out = Text(no_wrap=False, overflow="fold")

    # line 1: state, epoch, phase, batch, speed
    out.append(f" {STATE_LABEL.get(state, state.upper())} ",
               style=STATE_STYLE.get(state, "bold reverse"))
    parts = []
    if snap.task == "analysis":          # `luna-tui analyze`: its "batches" are series
        parts.append(f"analysis · series {fmt.count(snap.batches_done)}"
                     f"/{fmt.count(snap.batch_count)}")
    elif snap.epoch is not None:
        parts.append(f"epoch {snap.epoch}/{snap.epochs if snap.epochs else '?'}")
    if snap.phase is not None and snap.task != "analysis":
        parts.append(f"{snap.phase} batch {fmt.count(snap.batches_done)}"
                     f"/{fmt.count(snap.batch_count)}")
    if snap.task == "analysis":
        pass                              # no samples/s: a series takes seconds
    elif snap.samples_per_s is not None and snap.running and state != PAUSED:
        parts.append(f"{snap.samples_per_s:,.0f} samples/s")
    elif state == PAUSED:
        parts.append("0 samples/s")
    if not parts:
        parts.append("waiting for the first batch…" if snap.running else "no batches")
    label_cols = len(STATE_LABEL.get(state, state)) + 4
    out.append("  " + "\n".join(fmt.wrap_parts(parts, width, first=label_cols)))
    out.append("\n")

    # line 2: the phase's bar
    frac = snap.phase_fraction
    label = f" {100 * frac:5.1f} %"
    bar_style = "yellow" if state == PAUSED else ("red" if state == FAILED else "green")
    out.append(fmt.bar(frac, width - len(label)), style=bar_style)
    out.append(label)
    out.append("\n")

    # line 3: ETAs (active time only: paused time never counts)
    out.append_text(_eta_line(snap, now, width, state))

    # line 4: LUNA16's score of the latest validation, and the best so far
    score = _score_line(snap, width)
    if score is not None:
        out.append("\n")
        out.append_text(score)

    # line 5: whatever needs attention, else the last checkpoint
    note = _note(snap, ui, state, width)
    if note is not None:
        out.append("\n")
        out.append_text(note)
    return out


def add_details(text: Text, snap: RunSnapshot, width: int, spare_rows: int) -> Text:
    """What the run is and how far it got, in the ``spare_rows`` the band has beyond the
    pane's own lines (one of them the blank line before)."""
    if spare_rows >= 2:
        details = _details(snap, width)
        text.append("\n\n" + "\n".join(details[:spare_rows - 1]), style="dim")
    return text


def _score_line(snap: RunSnapshot, width: int) -> Text | None:
    """'CPM 0.612 [0.55–0.67] val E3 · best 0.640 E2' (nothing before a scored validation)."""
    pm = snap.metrics.get("val")
    if pm is None or pm.get(CPM.key) is None:
        return None
    text = Text(f"{CPM.name} ")
    text.append(fmt.cpm(pm.get(CPM.key), *(pm.get(k) for k in CPM.interval)), style="bold")
    parts = [f"val E{pm.epoch}"]
    points = [(p.epoch, p.cpm) for p in snap.history.get("val", ()) if fmt.is_num(p.cpm)]
    if len(points) > 1:
        best = CPM.best(points)
        parts.append(f"best {CPM.number(best[1])} E{best[0]}")
    lines = fmt.wrap_parts(parts, width, first=len(text.plain) + 1)
    text.append(" " + "\n".join(lines))
    return text


def _details(snap: RunSnapshot, width: int) -> list[str]:
    """Lines for a pane with rows to spare: what the run is and how far it got."""
    if snap.task == "analysis":
        facts = [f"{fmt.count(snap.val_samples)} series to analyse"]
        if snap.pid is not None:
            facts.append(f"pid {snap.pid}")
        return fmt.wrap_parts(facts, width)
    facts = [f"{fmt.count(snap.total_samples)} training samples seen"]
    if snap.lr is not None:
        facts.insert(0, f"lr {snap.lr:g}")
        if snap.momentum is not None:
            facts.insert(1, f"momentum {snap.momentum:g}")
    if snap.trn_samples is not None:
        facts.append(f"{fmt.count(snap.trn_samples)} per epoch ({fmt.count(snap.trn_pos)} pos)")
    if snap.pid is not None:
        facts.append(f"pid {snap.pid}")
    lines = fmt.wrap_parts(facts, width)
    if snap.resumed_from:
        lines.append(f"resumed from {snap.resumed_from}")
    if snap.checkpoint_total:
        lines.append(f"{snap.checkpoint_total} checkpoint(s) this run")
    return lines


def _eta_line(snap: RunSnapshot, now: datetime, width: int, state: str) -> Text:
    text = Text()
    if snap.ended or state in ENDED_STATES:
        text.append("run over — q exits", style="dim")
        return text
    approx = "≈" if snap.eta_rough else ""
    phase = PHASE_NAME.get(snap.phase or "", snap.phase or "phase")
    if snap.phase_remaining_s is None:
        text.append(f"{phase} ends ?", style="dim")
    else:
        text.append(f"{phase} ends ")
        text.append(f"{approx}{fmt.clock_time(now, snap.phase_remaining_s)}", style="bold")
        text.append(f" ({fmt.duration(snap.phase_remaining_s)} left)")
    first = len(text.plain)
    second = Text()
    if snap.run_remaining_s is None:
        second.append("run ends ?", style="dim")
    else:
        second.append("run ends ")
        second.append(f"{approx}{fmt.clock_time(now, snap.run_remaining_s)}", style="bold")
        second.append(f" ({fmt.duration(snap.run_remaining_s)} left)")
    sep = " · " if first + 3 + len(second.plain) <= width else "\n"
    text.append(sep)
    text.append_text(second)
    return text


def _crashed_note(snap: RunSnapshot) -> Text:
    text = Text("ended unexpectedly: ", style="bold red")
    text.append(snap.state_detail or "the run's process is gone without a final event")
    ck = snap.last_checkpoint
    if snap.task == "analysis":
        text.append("\n" + analysis_goes_on(snap.run_dir), style="bold")
        return text
    if ck is None:
        text.append("\nno checkpoint was saved: nothing to resume from", style="bold")
        return text
    text.append("\nresume: ")
    text.append(resume_command(snap.run_dir), style="bold")
    path = fmt.short_path(ck.path, snap.run_dir)     # the title shows the run dir
    text.append(f"\nlast checkpoint {path} (E{ck.epoch}, {ck.reason})")
    return text


def _note(snap: RunSnapshot, ui: UiStatus, state: str, width: int) -> Text | None:
    if state == CRASHED:
        return _crashed_note(snap)
    if state == FAILED:
        error = ui.failure or (snap.finished.error if snap.finished else None) \
            or snap.state_detail or (snap.errors[-1] if snap.errors else "unknown error")
        text = Text("training failed: ", style="bold red")
        text.append(error, style="bold")
        return text
    if ui.quitting:
        return Text("stopping: finishing the batch, saving a checkpoint, then exiting…",
                    style="bold magenta")
    if state == PAUSED and snap.paused_by_nonfinite and snap.last_nonfinite is not None:
        nf = snap.last_nonfinite
        return Text(f"!! non-finite loss at E{nf.epoch} {nf.phase} batch {nf.batch_ndx}: "
                    "run paused — c checkpoint · p resume · q quit", style="bold yellow")
    if ui.request:
        return Text(f"… {ui.request}", style="italic")
    if ui.read_only and snap.running:
        return Text(f"read-only: {ui.read_only}", style="yellow")
    if state == PAUSED:
        return Text("paused — p resumes; paused time does not count in the ETAs",
                    style="yellow")
    if state in (FINISHED, STOPPED):
        ck = snap.last_checkpoint
        text = Text("run finished" if state == FINISHED else "run stopped",
                    style="bold green" if state == FINISHED else "bold")
        if ck is not None:
            text.append(f" · last checkpoint {fmt.short_path(ck.path, snap.run_dir)}")
        return text
    if snap.last_checkpoint is not None:
        ck = snap.last_checkpoint
        parts = ["last checkpoint:", fmt.short_path(ck.path, snap.run_dir), f"({ck.reason})"]
        return Text("\n".join(fmt.wrap_parts(parts, width, sep=" ")), style="dim")
    return None


class ProgressPane(MemoPane):
    DEFAULT_CSS = """
    ProgressPane { height: auto; }
    """
    DRAW_WIDTH = 76

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "LUNA cockpit"

    def follow(self, snap: RunSnapshot, ui: UiStatus, now: datetime) -> None:
        self.show(snap, now, ui)

    def show(self, snap: RunSnapshot, now: datetime, ui: UiStatus) -> None:
        self.border_subtitle = f"device {snap.device}" if snap.device else ""
        super().show(snap, now, ui)

    def _title(self, snap: RunSnapshot, ui: UiStatus, width: int) -> str:
        """The title and the run directory; a long directory loses its start, not its
        name (the name says which run this is)."""
        if not snap.run_dir:
            return ui.title
        title = f"{ui.title} · {snap.run_dir}"
        room = width - 2            # the border's corners and padding
        if len(title) > room:
            keep = max(12, room - len(ui.title) - 4)
            title = f"{ui.title} · …{snap.run_dir[-keep:]}"
        return title

    def memo_key(self, width: int, snap: RunSnapshot, now: datetime, ui: UiStatus) -> tuple:
        self.border_title = self._title(snap, ui, width)
        return (snap.version, now.replace(second=0, microsecond=0), ui, width,
                self.content_size.height)

    def draw(self, width: int, snap: RunSnapshot, now: datetime, ui: UiStatus) -> None:
        text = render_progress(snap, now, width, ui)
        rows = self.content_size.height        # the band is as tall as its taller pane
        spare = max(0, rows - _line_count(text, width)) if rows else 0
        self.show_text(add_details(text, snap, width, spare))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """The rows the pane needs: its lines without the details, which only fill rows
        the band has spare."""
        if self._shown is None:
            return super().get_content_height(container, viewport, width)
        return _line_count(render_progress(*self._shown[:1], self._shown[1], width,
                                           self._shown[2]), width)


def _line_count(text: Text, width: int) -> int:
    return len(text.wrap(_MEASURE, width))


_MEASURE = Console(width=200, color_system=None, file=io.StringIO())
