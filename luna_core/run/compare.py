"""Runs side by side: each run's validation metrics per epoch, its best values and the epoch
each was reached, and the options that tell the runs apart (`luna-tui runs`, `luna-tui
compare`, the cockpit's baseline). Reads event files only: no torch, no numpy."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field

from luna_core.run import events as ev
from luna_core.run.eventfile import read_events, run_event_file
from luna_core.run.metric_catalog import (
    AUC,
    CPM,
    F1,
    LOSS,
    PRECISION,
    RECALL,
    SENS_AT,
    Metric,
    best_point,
    metric,
)
from luna_core.run.runs import not_a_run
from luna_core.run.task_table import task_view

#: Options that change how a run is operated, not what it learns: never "a difference".
OPERATIONAL = frozenset({"resume", "headless", "runs_dir", "num_workers", "threads",
                         "keep_checkpoints", "on_nonfinite", "tb_prefix", "baseline",
                         "notify_cmd", "notify_timeout", "quiet"})
#: The comparison's columns, in order (names, digits and which way is better: the catalog's).
METRICS: tuple[Metric, ...] = (LOSS, CPM, AUC, RECALL, PRECISION, F1)
#: A column whose title says more than the metric's name (the others are validation's too).
TITLES = {LOSS.key: "val " + LOSS.name}
#: The FROC's points, in --csv: the sensitivity at 1/8 ... 8 false positives per scan.
FROC_KEYS = tuple(m.key for m in SENS_AT.values())
BOOK_SPLIT = "candidates"      # runs from before --split used the book's split
#: Options added after runs were first recorded, with the value a run from before each had in
#: effect: a run that lacks one is read as having it (so it is no "difference").
LATER_OPTIONS = {"split": BOOK_SPLIT, "task": "nodule", "lr_warmup": 0, "val_every": 1,
                 "val_full": False, "finetune": None, "finetune_depth": 1, "rank_timings": 10}
#: Each validation's score per candidate, in the run folder (luna_core.score.validation_file).
VALIDATION_DIR = "validation"


def validation_file(run_dir: str, epoch: int) -> str:
    """Where a run keeps validation ``epoch``'s score per candidate."""
    return os.path.join(run_dir, VALIDATION_DIR, f"E{epoch:03d}.npz")


def best_cpm_files(histories: list[RunHistory]) -> list[str | None]:
    """Each run's validation file at its best CPM, where that file is there (None: no best
    CPM, or a run from before they were kept)."""
    out: list[str | None] = []
    for h in histories:
        b = h.best(CPM.key)
        path = validation_file(h.run_dir, b[0]) if b else None
        out.append(path if path and os.path.isfile(path) else None)
    return out


@dataclass(frozen=True)
class EpochRow:
    epoch: int
    total_samples: int
    values: dict[str, float | None]      # metric key -> value


@dataclass
class RunHistory:
    run_dir: str
    options: dict = field(default_factory=dict)
    epochs: list[EpochRow] = field(default_factory=list)   # validation, one row an epoch
    #: what was steered while it ran (`ctl set`, the cockpit's [ ]), in order:
    #: 'lr 0.001 -> 0.0005 at E2 batch 30 (ctl)'
    changes: list[str] = field(default_factory=list)

    def best(self, key: str, higher: bool | None = None) -> tuple[int, float] | None:
        """(epoch, value) of the best validation value of ``key`` (the first epoch on a tie),
        better being the catalog's direction of ``key``."""
        return best_point(((r.epoch, r.values.get(key)) for r in self.epochs),
                          direction(key, higher))

    def rows_around(self, total_samples: int) -> tuple[EpochRow, EpochRow] | None:
        """The validations either side of ``total_samples`` training samples (the same row
        twice on an exact match), for "ahead or behind at the same number of training
        samples"; None when this run has no validation on both sides of it (it had not
        validated by then, or has not got that far yet)."""
        before = [r for r in self.epochs if r.total_samples <= total_samples]
        after = [r for r in self.epochs if r.total_samples >= total_samples]
        if not before or not after:
            return None
        return before[-1], after[0]

    def value_at_samples(self, key: str, total_samples: int) -> float | None:
        """``key`` at ``total_samples``, read off the line between the validations either
        side (its own value on an exact match); None outside this run's validations."""
        around = self.rows_around(total_samples)
        if around is None:
            return None
        a, b = around
        va, vb = a.values.get(key), b.values.get(key)
        if va is None or vb is None:
            return None
        if b.total_samples == a.total_samples:
            return va
        w = (total_samples - a.total_samples) / (b.total_samples - a.total_samples)
        return va + w * (vb - va)


def history_from_events(run_dir: str, events: list[ev.Event]) -> RunHistory:
    starts = [e for e in events if isinstance(e, ev.RunStarted)]
    if not starts:
        raise not_a_run(run_event_file(run_dir))
    by_epoch: dict[int, EpochRow] = {}
    changes = []
    for e in events:                       # a resumed epoch's later row replaces the earlier
        if isinstance(e, ev.EpochMetrics) and e.phase == "val":
            by_epoch[e.epoch] = EpochRow(e.epoch, e.total_samples, dict(e.metrics))
        elif isinstance(e, ev.OptimizerChanged):
            changes.append(change_text(e))
    options = {**LATER_OPTIONS, **starts[0].options}     # runs from before an option: its
    if options.get("val_every") is None:                # value then (None: an unset one)
        options["val_every"] = LATER_OPTIONS["val_every"]
    return RunHistory(run_dir, options, [by_epoch[k] for k in sorted(by_epoch)], changes)


def change_text(e: ev.OptimizerChanged) -> str:
    """'lr 0.001 -> 0.0005 at E2 batch 30 (ctl)': what changed, where, from what."""
    parts = ([f"lr {e.old_lr:g} -> {e.lr:g}"] if e.lr != e.old_lr else []) + \
        ([f"momentum {e.old_momentum:g} -> {e.momentum:g}"] if e.momentum != e.old_momentum
         else [])
    return (", ".join(parts) or f"lr {e.lr:g} (unchanged)") + \
        f" at E{e.epoch} batch {e.batch_ndx}" + (f" ({e.source})" if e.source else "")


def direction(key: str, higher: bool | None = None) -> bool:
    """Higher is better for ``key``: the catalog says. ``higher``, from callers written before
    the catalog, must agree with it."""
    said = metric(key).higher
    if higher is not None and bool(higher) != said:
        raise ValueError(f"{key}: the catalog says {'higher' if said else 'lower'} is better")
    return said


def split_of(history: RunHistory) -> str:
    return history.options.get("split") or BOOK_SPLIT


def cpm_text(value: float | None, low: float | None = None, high: float | None = None) -> str:
    """'0.612 [0.55–0.67]': LUNA16's CPM with its 95 % interval ('-' when there is none)."""
    if value is None or value != value:
        return "-"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f}–{high:.2f}]"


def cpm_of(values: dict) -> str:
    """``cpm_text`` of a validation's metrics."""
    low, high = CPM.interval
    return cpm_text(values.get(CPM.key), values.get(low), values.get(high))


def best_cpm_text(history: RunHistory) -> str:
    """'0.612 [0.55–0.67] E3': the best CPM, its interval and its epoch ('-': none)."""
    b = history.best(CPM.key)
    if b is None:
        return "-"
    row = next(r for r in history.epochs if r.epoch == b[0])
    return f"{cpm_of(row.values)} E{b[0]}"


def by_best_cpm(histories: list[RunHistory]) -> list[RunHistory]:
    """Best CPM first; runs without one last, in their order."""
    def key(h: RunHistory) -> float:
        b = h.best(CPM.key)
        return CPM.order(b[1]) if b else float("inf")
    return sorted(histories, key=key)


def read_history(run_dir: str) -> RunHistory:
    return history_from_events(run_dir, read_events(run_event_file(run_dir)))


def differing_options(histories: list[RunHistory]) -> list[str]:
    """Option names whose values are not the same in every run (operational ones left out).
    Analyses (`luna-tui analyze`) have options of their own: they are compared among
    themselves, training runs among themselves (``options_by_kind``)."""
    names = sorted({n for h in histories for n in h.options} - OPERATIONAL)
    return [n for n in names if len({repr(h.options.get(n)) for h in histories}) > 1]


def options_by_kind(histories: list[RunHistory]) -> list[list[str]]:
    """Per run, the options that differ among the runs of its kind (training runs, or
    analyses)."""
    def kind(h: RunHistory) -> bool:
        return h.options.get("task") == "analysis"

    differ = {k: differing_options([h for h in histories if kind(h) == k])
              for k in (False, True)}
    return [differ[kind(h)] for h in histories]


#: Options a run's folder name already shows (left out beside it).
IN_THE_NAME = frozenset({"comment"})


def options_text(history: RunHistory, names: list[str], defaults: dict | None = None) -> str:
    """'balanced=1 augmented=True' for the options in ``names``; ``defaults`` (the run
    parser's, luna_core.train.options.option_defaults): those at their default left out, and
    the comment (the name shows it); 'defaults' when none is left."""
    shown = [n for n in names
             if defaults is None or (n not in IN_THE_NAME and (
                 n not in defaults or history.options.get(n) != defaults[n]))]
    if defaults is not None and names and not shown:
        return "defaults"
    return " ".join(f"{n}={history.options.get(n)}" for n in shown) or "-"


def best_text(history: RunHistory, key: str, higher: bool | None = None,
              digits: int | None = None) -> str:
    """'0.0123 E3': the best value of ``key`` and its epoch ('-': none); the catalog's
    digits unless ``digits``."""
    b = history.best(key, higher)
    return "-" if b is None else f"{metric(key).number(b[1], digits)} E{b[0]}"


def metrics_of(histories: list[RunHistory]) -> tuple[Metric, ...]:
    """The comparison's columns: each run's task's (luna_core.run.task_table), in order,
    each once (classifier runs alone: ``METRICS``)."""
    out: list[Metric] = []
    for h in histories:
        out += [m for m in task_view(h.options).columns if m not in out]
    return tuple(out) or METRICS


def compare_rows(histories: list[RunHistory]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison: per run its differing options, then per epoch its
    validation metrics, then its best values with their epochs."""
    differ = differing_options(histories)
    columns = metrics_of(histories)
    header = ["run", "epoch", "samples"] + [TITLES.get(m.key, m.name) for m in columns]
    rows: list[list[str]] = []
    for i, h in enumerate(histories, 1):
        name = f"#{i}"
        rows.append([name, "options", options_text(h, differ)] + [""] * len(columns))
        for change in h.changes:
            rows.append([name, "steered", change] + [""] * len(columns))
        for r in h.epochs:
            rows.append([name, str(r.epoch), str(r.total_samples)]
                        + [m.text(r.values.get(m.key)) for m in columns])
        rows.append([name, "best", ""] + [best_text(h, m.key) if m.better else ""
                                          for m in columns])
        if h.best(CPM.key):
            rows.append([name, "best CPM", best_cpm_text(h)] + [""] * len(columns))
    return header, rows


RUN_ON = ("options", "steered", "best CPM")   # rows whose text runs on past the columns


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns sized by the numbers; an options row runs on past them."""
    sized = [header] + [r for r in rows if r[1] not in RUN_ON]
    widths = [max(len(x) for x in col) for col in zip(*sized, strict=True)]
    out = []
    for row in [header, *rows]:
        if row[1] in RUN_ON:
            out.append(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
            continue
        cells = [cell.ljust(w) if j < 2 else cell.rjust(w)
                 for j, (cell, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def compare_text(histories: list[RunHistory]) -> str:
    header, rows = compare_rows(histories)
    legend = "\n".join(f"#{i}  {h.run_dir}" for i, h in enumerate(histories, 1))
    differ = differing_options(histories)
    if len(histories) == 1:
        said = "one run (name two or more to compare them)"
    else:
        said = ("options that differ: " + ", ".join(differ)) if differ else \
            "the runs' options are the same"
    tasks = sorted({task_view(h.options).name for h in histories})
    if len(tasks) > 1:
        said += (f"\nwarning: the runs train different tasks ({' / '.join(tasks)}): their "
                 "loss, recall and precision measure different things")
    splits = sorted({split_of(h) for h in histories})
    if len(splits) > 1:
        said += (f"\nwarning: the runs split validation differently ({' / '.join(splits)}): "
                 "their validation scores are not comparable")
    return f"{legend}\n{said}\n\n{format_table(header, rows)}\n"


def compare_csv(histories: list[RunHistory]) -> str:
    """The same as CSV: one row per run and epoch (and its best), the differing options as
    columns."""
    differ = differing_options(histories)
    columns = metrics_of(histories)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = (*CPM.interval, *FROC_KEYS)
    w.writerow(["run_dir", "split", *differ, "epoch", "total_samples"]
               + [m.key for m in columns] + list(extra))
    for h in histories:
        opts = [split_of(h), *(h.options.get(n) for n in differ)]
        for r in h.epochs:
            w.writerow([h.run_dir, *opts, r.epoch, r.total_samples]
                       + [r.values.get(m.key) for m in columns]
                       + [r.values.get(k) for k in extra])
        bests = [h.best(m.key) if m.better else None for m in columns]
        w.writerow([h.run_dir, *opts, "best", ""] + ["" if b is None else b[1] for b in bests])
        w.writerow([h.run_dir, *opts, "best_epoch", ""]
                   + ["" if b is None else b[0] for b in bests])
    return buf.getvalue()


def load_baseline(target: str | None, runs_dir: str) -> RunHistory | None:
    """``--baseline RUN`` ('latest': the newest run under runs_dir): its history, or None."""
    if not target:
        return None
    from luna_core.run.runs import resolve_run_dir

    return read_history(resolve_run_dir(target, runs_dir))
