"""The runs screen's rows, as plain values: every run under a runs folder (from its index:
luna_core.run.index) and every queued entry, with its state, best validation score, epochs and
the options that tell the runs apart; filtering, sorting, a stable colour per run, and a
run's options as the argv that repeats it. No Textual here."""

from __future__ import annotations

from dataclasses import dataclass

from luna_core.run import events as ev
from luna_core.run.compare import (
    OPERATIONAL,
    RunHistory,
    best_cpm_text,
    best_text,
    differing_options,
    history_from_events,
    options_text,
)
from luna_core.run.metric_catalog import CPM, F1, LOSS, Metric, metric
from luna_core.run.queue import Entry
from luna_core.run.runs import RUNNING, RunInfo

LIVE, PAUSED, QUEUED = "live", "paused", "queued"
#: Okabe & Ito, then more: one stable colour per run in the overlay
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (150, 150, 150))
COLUMNS = ("state", "run", "epoch", "best", "options")
#: Options a copied run leaves out: where it ran and how it was told to go on.
NOT_COPIED = OPERATIONAL | {"comment"}
#: A run's 'best': its best CPM, else its best F1 (not the same scale: sorted in this order).
BEST_ORDER: tuple[Metric, ...] = (CPM, F1)


@dataclass(frozen=True)
class Row:
    key: str                   # the run folder, or 'queue:N'
    state: str
    run: str                   # the folder's name, or '#N' and the queued entry's comment
    epoch: str
    best: str                  # best CPM [interval] E, else best F1 E
    best_value: float | None   # for sorting
    options: str
    started: float
    history: RunHistory | None = None
    best_key: str | None = None    # the metric of ``best`` (one of BEST_ORDER's)


def run_state(info: RunInfo, events: list[ev.Event]) -> str:
    if info.state != RUNNING:
        return info.state
    last = next((e for e in reversed(events) if isinstance(e, ev.StatusChanged)), None)
    return PAUSED if last is not None and last.state == ev.PAUSED else LIVE


def best_metric(h: RunHistory) -> Metric | None:
    """The first of BEST_ORDER the run has a value of."""
    return next((m for m in BEST_ORDER if h.best(m.key) is not None), None)


def best_of(h: RunHistory) -> tuple[str, float | None]:
    """('CPM 0.612 [0.55–0.67] E3', 0.612), else its best F1 the same way; ('-', None)."""
    m = best_metric(h)
    if m is None:
        return "-", None
    text = best_cpm_text(h) if m is CPM else best_text(h, m.key)
    return f"{m.name} {text}", h.best(m.key)[1]


def rows(found: list[tuple[RunInfo, list[ev.Event]]], queue: list[Entry]) -> list[Row]:
    from luna_core.train.options import option_defaults, split_comment

    histories = [history_from_events(info.run_dir, events) for info, events in found]
    differ = differing_options(histories)
    defaults = option_defaults()
    out = []
    for (info, events), h in zip(found, histories, strict=True):
        best, value = best_of(h)
        m = best_metric(h)
        name = info.run_dir.rstrip("/").split("/")[-1]
        out.append(Row(info.run_dir, run_state(info, events), name,
                       info.epoch_text(), best, value,
                       options_text(h, differ, defaults) if differ else "", info.started, h,
                       None if m is None else m.key))
    for e in queue:
        if e.state == "queued":      # its name in RUN, its options where a run's are
            comment, rest = split_comment(e.argv)
            out.append(Row(f"queue:{e.id}", QUEUED, f"#{e.id} {comment or '(queued)'}", "-",
                           "-", None, " ".join(rest) or "defaults", float("inf")))
    return out


def matches(row: Row, text: str) -> bool:
    """The filter: ``text`` in the run's state, name, best score or one of its option
    values (not the options' names: 'noise' would match every run)."""
    text = text.lower().strip()
    values = [token.split("=", 1)[-1] for token in row.options.split()]
    return not text or any(text in str(v).lower()
                           for v in (row.state, row.run, row.best, row.key, *values))


def sort_rows(found: list[Row], column: str, descending: bool = False) -> list[Row]:
    """By ``column``; 'best' by the score itself (runs without one last)."""
    if column == "best":       # CPM before F1 (not the same scale), each best first
        order = [m.key for m in BEST_ORDER]

        def rank(r: Row) -> tuple:
            m = metric(r.best_key)
            return (order.index(r.best_key),
                    m.order(r.best_value) if not descending else -m.order(r.best_value))
        scored = sorted((r for r in found if r.best_value is not None), key=rank)
        return scored + [r for r in found if r.best_value is None]
    if column == "run":
        return sorted(found, key=lambda r: r.started, reverse=descending)
    return sorted(found, key=lambda r: str(getattr(r, column)), reverse=descending)


def free_colour(taken: dict[str, int]) -> int:
    """A marked run keeps its colour while it is marked (sorting, filtering and marking
    others do not change it); a new mark takes the first colour no marked run has."""
    used = set(taken.values())
    return next((k for k in range(len(PALETTE)) if k not in used), len(taken) % len(PALETTE))


def overlay_key(histories: list[RunHistory]) -> tuple[str, str]:
    """(metric key, its name): the CPM when every marked run has one, else the loss."""
    m = CPM if histories and all(h.best(CPM.key) for h in histories) else LOSS
    return m.key, f"validation {m.name}"


def options_argv(options: dict) -> list[str]:
    """A run's options as the argv that makes the same run again (`queue add`)."""
    from luna_core.train.options import build_parser

    defaults = vars(build_parser().parse_args([]))
    argv: list[str] = []
    for name, value in options.items():
        if name in NOT_COPIED or name not in defaults or value == defaults[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    comment = options.get("comment")
    return ([comment] if comment and comment != defaults.get("comment") else []) + argv
