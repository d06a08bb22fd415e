"""Per-class table: all / neg / pos for trn and val of the latest epoch.

When "all" looks excellent but the positive class (nodules) is almost never right, the pane
says so in a banner that cannot be missed (reverse video, so it survives NO_COLOR).
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from luna_core.run import verdict
from luna_core.run.alerts import MISSED
from luna_core.run.metric_catalog import (
    AUC,
    AVERAGE_PRECISION,
    CORRECT,
    CORRECT_NEG,
    CORRECT_POS,
    CPM,
    DICE,
    F1,
    LOSS,
    LOSS_NEG,
    LOSS_POS,
    PIXEL_FN,
    PIXEL_FP,
    PIXEL_TP,
    PRECISION,
    RECALL,
    SENS_AT_1FP,
)
from luna_tui.model import formatting as fmt
from luna_tui.model.pane_lines import baseline_line
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.widgets.analysis_table import render_analysis_table
from luna_tui.widgets.pane import MemoPane

ALARM_STYLE = "bold white on red"
ALARM_STYLE_NO_COLOR = "bold reverse"      # NO_COLOR: greys only, so lean on reverse video


def alarm_lines(snap: RunSnapshot, compact: bool = False) -> list[str]:
    """One line per phase whose nodules are (almost) never right; ``compact`` leaves out
    the percentage of nodules (the counts say it)."""
    lines = []
    for phase in ("val", "trn"):
        pm = snap.metrics.get(phase)
        if pm is None or not pm.pos_alarm:
            continue
        pos = pm.get(CORRECT_POS.key)
        every = pm.get(CORRECT.key)
        counts = f"{fmt.count(pm.pos_correct)} of {fmt.count(pm.pos_count)}"
        if compact:
            lines.append(f"{phase} E{pm.epoch}: {counts} nodules right, all {fmt.pct(every)}")
        else:
            lines.append(f"{phase} E{pm.epoch}: {fmt.pct(pos)} of nodules right ({counts}), "
                         f"all {fmt.pct(every)}")
    return lines


#: The standing against chance under the table (luna_core.run.verdict; from the AUC's interval).
STANDING_WORDS = {verdict.CHANCE: ("at chance", "bold red"),
                  verdict.WORSE: ("worse than chance", "bold red"),
                  verdict.BETTER: ("above chance", "green")}


def score_line(snap: RunSnapshot, compact: bool = False, width: int | None = None
               ) -> Text | None:
    """'val E3  LUNA16 CPM 0.612 [0.55–0.67] · sens@1FP 0.70 · AUC 0.93 · AP 0.41 · above
    chance' under the table: how well the latest validation ranks nodules above the rest, and
    where that stands against chance (luna_core.run.verdict). To fit ``width`` the AP goes
    first, then 'above chance', then the sensitivity at 1 FP; 'at chance' always stays."""
    pm = snap.metrics.get("val")
    if pm is not None and snap.task == "malignancy" and pm.get(AUC.key) is not None:
        text = Text(f"val E{pm.epoch}  ", style="bold")
        for compact in (0, 1, 2):           # the difference's numbers go first, then intervals
            line = verdict.malignancy_line(dict(pm.metrics), compact)
            if width is None or text.cell_len + len(line) <= width:
                break
        text.append(line)
        return text
    if pm is None or pm.get(CPM.key) is None:
        return None
    word, _line = verdict.standing({k: pm.get(k) for k in (AUC.key, *AUC.interval)})
    parts: list[tuple[str, str, str]] = []     # (what, text, style)
    for what, m in (("sens", SENS_AT_1FP), ("auc", AUC), ("ap", AVERAGE_PRECISION)):
        if pm.get(m.key) is not None and not (compact and what == "ap"):
            parts.append((what, f"{m.short if compact else m.name} "
                                f"{m.number(pm.get(m.key), 2)}", ""))
    if word in STANDING_WORDS:
        label, style = STANDING_WORDS[word]
        parts.append(("good" if word == verdict.BETTER else "warn", label, style))
    head = Text(f"val E{pm.epoch}  ", style="bold")
    head.append(f"{CPM.short if compact else CPM.label} ")
    head.append(fmt.cpm(pm.get(CPM.key), *(pm.get(k) for k in CPM.interval)), style="bold")

    def line(kept) -> Text:
        text = head.copy()
        for _what, shown, style in kept:
            text.append(" · ")
            text.append(shown, style=style)
        return text

    for drop in ("ap", "good", "sens"):
        if width is None or line(parts).cell_len <= width:
            break
        parts = [p for p in parts if p[0] != drop]
    return line(parts)


#: The segmentation task's table: a row a phase, its pixel numbers (luna_core.train.seg_metrics).
PIXEL_COLUMNS = (LOSS, PIXEL_TP, PIXEL_FN, PIXEL_FP, PRECISION, RECALL, F1, DICE)


def render_pixel_table(snap: RunSnapshot, width: int = 76,
                       versus: str | None = None) -> Group | Table:
    """--task seg: the latest epoch's pixel numbers, training and validation (TP, FN and FP
    as % of the label's pixels; FP passes 100 % on whole slices), and the label pixels found."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), expand=False,
                  header_style="bold", show_edge=False)
    table.add_column("", no_wrap=True)
    for m in PIXEL_COLUMNS:
        table.add_column(m.short, justify="right", no_wrap=True)
    for phase in ("trn", "val"):
        pm = snap.metrics.get(phase)
        if pm is None:
            continue
        cells = [_pixel_cell(m, pm.get(m.key)) for m in PIXEL_COLUMNS]
        table.add_row(f"{phase} E{pm.epoch}", *cells)
    val = snap.metrics.get("val")
    below = []
    if val is not None:
        below.append(Text(f"val E{val.epoch}: {fmt.count(val.pos_correct)} of "
                          f"{fmt.count(val.pos_count)} nodule pixels found; best.pt by recall",
                          style="bold"))
    if versus:
        below.append(Text(versus, style="bold"))
    return Group(table, *below) if below else table


def _pixel_cell(m, value: float | None) -> str:
    """A pixel number as the table shows it: FP % runs to thousands, without decimals."""
    if m.percent:
        return fmt.pct(value, 0 if value is not None and abs(value) >= 100 else 1)
    return fmt.num(value, m.digits)


#: --task malignancy: what its classes are (training's "other": benign nodules and the
#: non-nodules; validation's: benign nodules only).
CLASS_NAMES = {"malignancy": {("trn", "neg"): "other", ("val", "neg"): "benign",
                              ("trn", "pos"): "malignant", ("val", "pos"): "malignant"}}


def render_class_table(snap: RunSnapshot, width: int = 76, no_color: bool = False,
                       versus: str | None = None) -> Group | Table | Text:
    """The table; ``versus``: a line on this run against a baseline run, shown under it."""
    if snap.task == "analysis":
        return render_analysis_table(snap, width)
    if not snap.metrics:
        return Text("no epoch finished yet — metrics appear after the first training epoch",
                    style="dim")
    if snap.task == "seg":
        return render_pixel_table(snap, width, versus)
    compact = width < 72
    table = Table(box=None, pad_edge=False, padding=(0, 1), expand=False,
                  header_style="bold", show_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("loss", justify="right", no_wrap=True)
    table.add_column("correct", justify="right", no_wrap=True)
    table.add_column("k of n", justify="right", no_wrap=True)
    for m in (PRECISION, RECALL, F1):
        table.add_column(m.short if compact else m.name, justify="right", no_wrap=True)
    first = True
    for phase in ("trn", "val"):
        pm = snap.metrics.get(phase)
        if pm is None:
            continue
        if not first:
            table.add_section()
        first = False
        alarm = pm.pos_alarm
        rows = (
            ("all", pm.get(LOSS.key), pm.get(CORRECT.key), pm.all_correct, pm.all_count),
            ("neg", pm.get(LOSS_NEG.key), pm.get(CORRECT_NEG.key), pm.neg_correct,
             pm.neg_count),
            ("pos", pm.get(LOSS_POS.key), pm.get(CORRECT_POS.key), pm.pos_correct,
             pm.pos_count),
        )
        names = CLASS_NAMES.get(snap.task, {})
        for i, (which, loss, correct, k, n) in enumerate(rows):
            label = f"{phase} E{pm.epoch}" if i == 0 else ""
            cls = names.get((phase, which), which)        # the task's name for the class
            if which == "pos":
                extra = [fmt.num(pm.get(m.key), m.digits) for m in (PRECISION, RECALL, F1)]
            else:
                extra = ["", "", ""]
            style = None
            if alarm and which == "pos":
                style = ALARM_STYLE_NO_COLOR if no_color else ALARM_STYLE
            kn = f"{fmt.count(k)} of {fmt.count(n)}"
            table.add_row(label, cls, fmt.num(loss), fmt.pct(correct), kn, *extra,
                          style=style)
    alarms = alarm_lines(snap, compact)
    below = [Text(versus, style="bold")] if versus else []
    score = score_line(snap, compact, width)
    if score is not None:
        below.insert(0, score)
    if not alarms:
        return Group(table, *below) if below else table
    banner = Text()
    for i, line in enumerate(alarms):
        if i:
            banner.append("\n")
        banner.append(f" !! {MISSED} ", style="bold reverse")
        banner.append(" " + line + " ", style=ALARM_STYLE_NO_COLOR if no_color else ALARM_STYLE)
    return Group(banner, table, *below)


class ClassTablePane(MemoPane):
    DEFAULT_CSS = """
    ClassTablePane { height: auto; }
    """
    DRAW_WIDTH = 76

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Per class · latest epoch"
        self.baseline = None      # a RunHistory (luna_core.run.compare): this run against it

    def set_baseline(self, baseline) -> None:
        self.baseline = baseline
        self.forget()

    def versus(self, snap: RunSnapshot) -> str | None:
        return baseline_line(snap, self.baseline)

    def memo_key(self, width: int, snap: RunSnapshot) -> tuple:
        return (width, snap.metrics_version, self.versus(snap))

    def draw(self, width: int, snap: RunSnapshot) -> None:
        alarm = bool(alarm_lines(snap))
        self.set_class(alarm, "-alarm")
        what = "Pixels" if snap.task == "seg" else "Per class"
        self.border_title = (f"!! {what} · {MISSED}" if alarm else f"{what} · latest epoch")
        if snap.task == "analysis":
            self.border_title = "Detection · the book's table"
        self.update(render_class_table(snap, width, no_color=self.app.no_color,
                                       versus=self.versus(snap)))
