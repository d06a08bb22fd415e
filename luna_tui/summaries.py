"""One-line summaries of the panes: what a collapsed pane says, and the status line above views
2-4. No Textual here."""

from __future__ import annotations

from luna_tui import formatting as fmt
from luna_tui.snapshot import RunSnapshot
from luna_tui.system_probe import SystemReading

PHASE = {"trn": "trn", "val": "val"}


def where(snap: RunSnapshot) -> str:
    """'TRAINING E2/3 trn 81/200' and the like."""
    parts = [snap.state.upper()]
    if snap.epoch is not None:
        parts.append(f"E{snap.epoch}/{snap.epochs}" if snap.epochs else f"E{snap.epoch}")
    if snap.phase:
        parts.append(f"{PHASE.get(snap.phase, snap.phase)} {snap.batches_done}/"
                     f"{snap.batch_count}")
    return " ".join(parts)


def progress_line(snap: RunSnapshot) -> str:
    parts = [where(snap)]
    if fmt.is_num(snap.samples_per_s):
        parts.append(f"{snap.samples_per_s:,.0f} samples/s")
    if fmt.is_num(snap.run_remaining_s) and snap.running:
        parts.append(f"run ends in {fmt.duration(snap.run_remaining_s)}")
    return " · ".join(parts)


def latest_loss(snap: RunSnapshot) -> str:
    if snap.batch_loss:
        return f"loss {snap.batch_loss[-1][1]:.4f}"
    return "loss —"


def classes_line(snap: RunSnapshot) -> str:
    alarms = any(pm.pos_alarm for pm in snap.metrics.values())
    val = snap.metrics.get("val") or snap.metrics.get("trn")
    if val is None:
        return "per class: after the first epoch"
    text = (f"{val.phase} E{val.epoch}: loss {fmt.num(val.get('loss/all'))} · nodules "
            f"{fmt.pct(val.get('correct/pos'))} correct · recall "
            f"{fmt.num(val.get('pr/recall'), 3)}")
    return ("!! NODULES MISSED · " + text) if alarms else text


def trends_line(snap: RunSnapshot) -> str:
    epochs = len(snap.history.get("val", ())) or len(snap.history.get("trn", ()))
    return f"{latest_loss(snap)} · {epochs} epoch(s) of trends · press 2 for the plots"


def bottleneck_line(snap: RunSnapshot) -> str:
    b = snap.bottleneck
    if b is None or b.batches == 0:
        return "bottleneck: measuring"
    return f"data wait {100 * b.data_share:.0f} % of batch time ({b.phase}, {b.batches} batches)"


def system_line(reading: SystemReading | None) -> str:
    if reading is None:
        return "system: reading"
    parts = []
    if fmt.is_num(reading.cpu_percent):
        parts.append(f"CPU {reading.cpu_percent:.0f} %")
    if reading.ram_percent is not None:
        parts.append(f"RAM {reading.ram_percent:.0f} %")
    for gpu in reading.gpus[:2]:
        util = gpu.util_percent
        parts.append(f"GPU{gpu.index} {util:.0f} %" if fmt.is_num(util) else f"GPU{gpu.index}")
    if not reading.gpus:
        parts.append(reading.gpu_note)
    return " · ".join(parts) + " · press 4 for details"


def log_line(snap: RunSnapshot) -> str:
    if not snap.log:
        return "log: nothing yet · press 3 for the log"
    return f"{snap.log[-1].message} · press 3 for the log"


def status_line(snap: RunSnapshot, view_name: str) -> str:
    """The line above views 2-4: where the run is, in one line."""
    return f"{progress_line(snap)} · {latest_loss(snap)} · view: {view_name} · 1 overview"
