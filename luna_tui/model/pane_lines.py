"""One-line summaries of the panes: what a collapsed pane says, and the status line above a
view other than the overview. No Textual here.

A pane's line (luna_tui.model.views names it) takes what the pane shows (the snapshot, or the
system reading) and the key of the view that shows the pane whole, for its "press" hint."""

from __future__ import annotations

from luna_core.run.alerts import MISSED
from luna_core.run.metric_catalog import CORRECT_POS, CPM, F1, LOSS, RECALL
from luna_tui.model import formatting as fmt
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.system_reading import SystemReading

PHASE = {"trn": "trn", "val": "val"}


def where(snap: RunSnapshot) -> str:
    """'TRAINING E2/3 trn 81/200' and the like."""
    return " ".join(filter(None, (snap.state.upper(), position(snap))))


def position(snap: RunSnapshot) -> str:
    """'E2/3 trn 81/200': the epoch and the batches done of the phase (counted from 1)."""
    parts = []
    if snap.epoch is not None:
        parts.append(f"E{snap.epoch}/{snap.epochs}" if snap.epochs else f"E{snap.epoch}")
    if snap.phase:
        parts.append(f"{PHASE.get(snap.phase, snap.phase)} {snap.batches_done}/"
                     f"{snap.batch_count}")
    return " ".join(parts)


def _run_facts(snap: RunSnapshot) -> dict[str, str]:
    """The progress facts both one-line summaries pick from, those the run has said."""
    facts = {}
    if fmt.is_num(snap.samples_per_s):
        facts["speed"] = f"{snap.samples_per_s:,.0f} samples/s"
    if fmt.is_num(snap.run_remaining_s) and snap.running:
        facts["ends"] = f"run ends in {fmt.duration(snap.run_remaining_s)}"
    if snap.lr is not None:
        facts["lr"] = f"lr {snap.lr:g}"
    return facts


def progress_line(snap: RunSnapshot, view_key: str = "") -> str:
    facts = _run_facts(snap)
    return " · ".join([where(snap), *(facts[k] for k in ("speed", "ends", "lr") if k in facts)])


def latest_loss(snap: RunSnapshot) -> str:
    if snap.batch_loss:
        return f"loss {snap.batch_loss[-1][1]:.4f}"
    return "loss —"


def classes_line(snap: RunSnapshot, view_key: str = "") -> str:
    alarms = any(pm.pos_alarm for pm in snap.metrics.values())
    val = snap.metrics.get("val") or snap.metrics.get("trn")
    if val is None:
        return "per class: after the first epoch"
    text = (f"{val.phase} E{val.epoch}: {LOSS.name} {fmt.num(val.get(LOSS.key), LOSS.digits)}"
            f" · nodules {fmt.pct(val.get(CORRECT_POS.key), CORRECT_POS.digits)} correct · "
            f"{RECALL.name} {fmt.num(val.get(RECALL.key), RECALL.digits)}")
    return (f"!! {MISSED} · " + text) if alarms else text


def trends_line(snap: RunSnapshot, view_key: str) -> str:
    epochs = len(snap.history.get("val", ())) or len(snap.history.get("trn", ()))
    return f"{latest_loss(snap)} · {epochs} epoch(s) of trends · press {view_key} for the plots"


def bottleneck_line(snap: RunSnapshot, view_key: str = "") -> str:
    b = snap.bottleneck
    if b is None or b.batches == 0:
        return "bottleneck: measuring"
    return f"data wait {100 * b.data_share:.0f} % of batch time ({b.phase}, {b.batches} batches)"


def system_line(reading: SystemReading | None, view_key: str,
                snap: RunSnapshot | None = None) -> str:
    """'CPU 41 % · RAM 38 % · GPU0 97 % · press 4 for details'; under torchrun the slowest
    rank first when one is named: 'slowest: rank 3 (data wait) · CPU …'."""
    slowest = ""
    if snap is not None and snap.straggler is not None:
        slowest = (f"slowest: rank {snap.straggler['rank']} ({snap.straggler['part']}) · ")
    if reading is None:
        return slowest + "system: reading"
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
    return slowest + " · ".join(parts) + f" · press {view_key} for details"


def log_line(snap: RunSnapshot, view_key: str) -> str:
    if not snap.log:
        return f"log: nothing yet · press {view_key} for the log"
    return f"{snap.log[-1].message} · press {view_key} for the log"


def status_line(snap: RunSnapshot, view_name: str, width: int = 10_000, *,
                overview_key: str) -> str:
    """The line above a view other than the overview (whose key is ``overview_key``): where
    the run is, in at most ``width`` characters. What matters most comes first (where, loss,
    time left); what does not fit is left out whole, the least important first (lr,
    samples/s, the view's name), never cut mid-value."""
    facts = _run_facts(snap)
    if snap.task == "analysis":          # `luna-tui analyze`: no loss, no samples, no lr
        parts = [(0, f"{snap.state.upper()} analysis · series {snap.batches_done}/"
                     f"{snap.batch_count}")]
        parts += [(2, facts["ends"])] if "ends" in facts else []
    else:
        parts = [(0, where(snap)), (1, latest_loss(snap))]
        parts += [(rank, facts[k]) for k, rank in (("ends", 2), ("speed", 4), ("lr", 5))
                  if k in facts]
    parts.append((3, f"view: {view_name} ({overview_key}: all)"))
    while len(parts) > 1:
        line = " · ".join(text for _rank, text in parts)
        if len(line) <= width:
            return line
        parts.remove(max(parts))     # the highest rank is the least important
    line = parts[0][1]
    return line if len(line) <= width else line[:max(0, width - 1)] + "…"


def baseline_line(snap: RunSnapshot, baseline) -> str | None:
    """This run's latest validation against the baseline run's at the same number of
    training samples (its own validation there, or read off the line between the two either
    side): 'vs baseline (its E2 at 5,256 samples): recall +0.250 ahead, loss 0.1200 better'.
    Where the baseline has no value at that number of samples, says so. None before this
    run's first validation or without a baseline."""
    pm = snap.metrics.get("val")
    if baseline is None or pm is None:
        return None
    n = pm.total_samples
    around = baseline.rows_around(n)
    if around is None:
        if not baseline.epochs or baseline.epochs[0].total_samples > n:
            return f"vs baseline: it had not validated by {n:,} samples"
        last = baseline.epochs[-1]
        return (f"vs baseline: no value at {n:,} samples (its last validation: E{last.epoch} "
                f"at {last.total_samples:,})")
    a, b = around
    where = (f"its E{a.epoch} at {a.total_samples:,} samples" if a is b or a.epoch == b.epoch
             else f"between its E{a.epoch} and E{b.epoch}, at {n:,} samples")
    parts = []
    metrics = (RECALL, LOSS, F1)
    if pm.get(CPM.key) is not None and baseline.value_at_samples(CPM.key, n) is not None:
        metrics = (CPM, LOSS)   # LUNA16's own
    for m in metrics:
        mine, theirs = pm.get(m.key), baseline.value_at_samples(m.key, n)
        if mine is None or theirs is None:
            continue
        diff = mine - theirs
        digits = m.digits
        if abs(diff) < 10 ** -digits:
            parts.append(f"{m.name} level")
        else:
            better = m.is_better(mine, theirs)
            word = ("ahead" if better else "behind") if m.higher else \
                ("better" if better else "worse")
            parts.append(f"{m.name} {diff:+.{digits}f} {word}")
    return f"vs baseline ({where}): " + ", ".join(parts)
