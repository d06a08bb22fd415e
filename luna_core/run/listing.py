"""`luna-tui runs`: one line a run, fitted to the terminal's width (or whole, ``width=None``,
for scripts). No torch here."""

from __future__ import annotations

import datetime
import os
import re

from luna_core.run.compare import (
    RunHistory,
    best_cpm_text,
    best_text,
    cpm_text,
    options_by_kind,
    options_text,
    split_of,
)
from luna_core.run.metric_catalog import (
    AUC,
    CORRECT_POS,
    DETECTION_CPM,
    DICE,
    F1,
    LOSS,
    RECALL,
)
from luna_core.run.runs import RunInfo

#: Columns left out, first to last, when the terminal is too narrow for all of them.
DROP_ORDER = ("options", "started", "split", "best_f1", "val_pos", "best_dice", "best_recall",
              "best_auc", "task", "best_loss", "det_cpm", "best_cpm")
#: Metric columns: left out when no listed run has a value in them (a seg run has no CPM).
METRIC_COLUMNS = frozenset({"val_pos", "best_loss", "best_cpm", "best_recall", "best_f1",
                            "best_dice", "best_auc", "det_cpm"})
MIN_RUN = 24            # the run's name gets at least this many columns before one is dropped
GAP = 2


def _started(t: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):      # a time no clock gives (a bad file)
        return "-"


def _cells(run: RunInfo, h: RunHistory, differ: list[str],
           defaults: dict | None = None) -> dict[str, str]:
    started = _started(run.started)
    task = h.options.get("task") or "nodule"
    return {
        "state": run.state, "epoch": run.epoch_text(), "task": task,
        "val_loss": "-" if run.val_loss is None else LOSS.number(run.val_loss),
        "val_pos": "-" if run.val_correct_pos is None else CORRECT_POS.number(run.val_correct_pos),
        "best_loss": best_text(h, LOSS.key),
        "best_recall": best_text(h, RECALL.key),
        "best_f1": best_text(h, F1.key), "best_dice": best_text(h, DICE.key),
        "best_cpm": best_cpm_text(h),
        "split": "-" if task == "analysis" else split_of(h),
        # malignancy's best.pt is by AUC; an analysis' score is its detection CPM
        "best_auc": best_text(h, AUC.key) if task == "malignancy" else "-",
        "det_cpm": _detection_cpm(h),
        "started": started, "run": run.run_dir,
        "options": f"[{options_text(h, differ, defaults)}]" if differ else "",
    }


def _detection_cpm(h: RunHistory) -> str:
    """An analysis' detection CPM with its interval ('-': none, or not an analysis)."""
    row = h.epochs[-1].values if h.epochs else {}
    value = row.get(DETECTION_CPM.key)
    if value is None:
        return "-"
    return cpm_text(value, *(row.get(k) for k in DETECTION_CPM.interval))


COLUMNS = [  # (key, title, right-aligned)
    ("state", "STATE", False), ("task", "TASK", False), ("epoch", "EPOCH", True),
    ("val_loss", "VAL LOSS", True),
    ("val_pos", "VAL POS%", True), ("best_loss", "BEST LOSS", True),
    ("best_cpm", "BEST CPM [95% CI]", True), ("best_recall", "BEST RECALL", True),
    ("best_f1", "BEST F1", True), ("best_dice", "BEST DICE", True),
    ("best_auc", "BEST AUC", True), ("det_cpm", "DETECTION CPM", True),
    ("split", "SPLIT", False),
    ("started", "STARTED", False), ("run", "RUN", False),
    ("options", "[OPTIONS THAT DIFFER]", False),
]


#: A run folder's name: its start time, then its comment (luna_core.train.rundir).
RUN_NAME = re.compile(r"^(\d{4}-\d\d-\d\d_[\d.]+)-(.*)$")


def elide_run(run_dir: str, room: int) -> str:
    """The run's folder name in ``room`` columns: whole when it fits; else the comment (what
    tells runs apart) whole, after as much of the start time's end as fits ('…04.19.49-
    balanced-offset'); a comment longer than that is cut in its middle, keeping both ends."""
    if len(run_dir) <= room:
        return run_dir
    name = os.path.basename(run_dir.rstrip("/"))
    if len(name) <= room:
        return name
    room = max(room, 2)
    match = RUN_NAME.match(name)
    comment = match.group(2) if match else name
    if len(comment) + 1 < room:
        return "…" + name[-(room - 1):]
    head = (room - 1) // 2
    return comment[:head] + "…" + comment[len(comment) - (room - 1 - head):]


def runs_lines(found: list[tuple[RunInfo, list]], histories: list[RunHistory],
               width: int | None = None, defaults: dict | None = None) -> list[str]:
    """The header and one line a run; ``width``: fit every line in it (None: whole);
    ``defaults``: options at their default are left out of a run's differing ones."""
    per_run = options_by_kind(histories)
    differ = sorted({n for names in per_run for n in names})
    rows = [_cells(run, h, names, defaults)
            for (run, _e), h, names in zip(found, histories, per_run, strict=True)]
    tasks = {r["task"] for r in rows}
    columns = [c for c in COLUMNS if (c[0] != "options" or differ)
               and (c[0] != "task" or tasks != {"nodule"})       # shown once another is listed
               and (c[0] not in METRIC_COLUMNS or any(r[c[0]] != "-" for r in rows))]
    widths = {key: max([len(title)] + [len(r[key]) for r in rows]) for key, title, _r in COLUMNS}

    def used(cols) -> int:
        return sum(widths[k] + GAP for k, _t, _r in cols if k not in ("run", "options"))

    if width is not None:
        for key in DROP_ORDER:
            extra = widths["options"] + GAP if any(c[0] == "options" for c in columns) else 0
            if used(columns) + MIN_RUN + extra <= width:
                break
            columns = [c for c in columns if c[0] != key]
        extra = widths["options"] + GAP if any(c[0] == "options" for c in columns) else 0
        room = max(MIN_RUN, width - used(columns) - extra)
        widths["run"] = min(widths["run"], room)
        for r in rows:
            r["run"] = elide_run(r["run"], widths["run"])

    def line(cells: dict[str, str]) -> str:
        out = []
        for key, _title, right in columns:
            text = cells[key]
            if key == "options":
                out.append(text)
            else:
                out.append(text.rjust(widths[key]) if right else text.ljust(widths[key]))
        text = (" " * GAP).join(out).rstrip()
        return text if width is None else text[:width]

    return [line({k: t for k, t, _r in COLUMNS}), *(line(r) for r in rows)]
