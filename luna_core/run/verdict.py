"""Where a model stands, in words: against chance (from the AUC's 95 % interval, never from
the counts at the threshold) and against its own past (the CPM over its validations).

Read by the diagnostics view, the class table and the run's summary, from a validation's
metrics (metric_catalog keys) and the CPM of each validation so far. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from luna_core.run import metric_catalog as mc

#: The CPM the challenge's best systems reach (its false-positive reduction track).
GOOD_CPM = 0.9
#: CPM steps smaller than this are "flat" (the CPM moves by a few hundredths on noise).
FLAT_CPM = 0.01

CHANCE, WORSE, BETTER, UNKNOWN = "chance", "worse", "better", "unknown"


def standing(metrics: Mapping[str, float]) -> tuple[str, str]:
    """(word, line): whether the validation in ``metrics`` ranks nodules above non-nodules
    better than chance. CHANCE when the AUC's interval holds 0.5."""
    auc = metrics.get(mc.AUC.key)
    low, high = (metrics.get(k) for k in mc.AUC.interval)
    if auc is None:
        return UNKNOWN, "one class only in this validation: nothing to rank"
    if low is None or high is None:
        return UNKNOWN, f"AUC {auc:.2f} (no interval: the bootstrap is off)"
    shown = f"AUC {auc:.2f} [{low:.2f}–{high:.2f}]"
    if high < 0.5:
        return WORSE, f"{shown}: worse than chance (it ranks nodules below the rest)"
    if low <= 0.5:
        return CHANCE, f"{shown}: no better than chance"
    return BETTER, f"{shown}: better than chance"


def cpm_trend(cpms: Sequence[tuple[int, float | None]]) -> str | None:
    """The CPM over the validations so far (oldest first): rising or falling N in a row, or
    where the latest stands against the best; None before the second validation."""
    points = [(e, v) for e, v in cpms if v is not None]
    if len(points) < 2:
        return None
    steps = [b[1] - a[1] for a, b in zip(points, points[1:])]
    last = steps[-1]
    if abs(last) < FLAT_CPM:
        direction = 0
    else:
        direction = 1 if last > 0 else -1
    run = 0
    for step in reversed(steps):
        if direction and step * direction >= FLAT_CPM:
            run += 1
        elif not direction and abs(step) < FLAT_CPM:
            run += 1
        else:
            break
    best_epoch, best = max(points, key=lambda p: p[1])
    epoch, now = points[-1]
    if direction > 0:
        trend = f"CPM rising {run} validation{'s' if run > 1 else ''} in a row"
    elif direction < 0:
        trend = f"CPM falling {run} validation{'s' if run > 1 else ''} in a row"
    else:
        trend = f"CPM flat ({now:.2f}) for {run + 1} validations"
    if best_epoch == epoch:
        return trend + " (its best)"
    return trend + f" ({now:.2f}; its best {best:.2f} at E{best_epoch})"


def verdict(metrics: Mapping[str, float], cpms: Sequence[tuple[int, float | None]]) -> str:
    """One line: the standing against chance, then the trend."""
    _word, line = standing(metrics)
    trend = cpm_trend(cpms)
    return line if trend is None else f"{line}; {trend}"


def cpm_meaning(metrics: Mapping[str, float]) -> str:
    """What a CPM is and what good and chance look like, with this validation's chance."""
    chance = metrics.get(mc.CPM_CHANCE.key)
    here = f"chance here {chance:.2f}" if chance is not None else "chance near 0"
    return (f"CPM: the share of nodules found, averaged over 1/8 to 8 false alarms per scan; "
            f"1.0 finds every one, {here}, the challenge's best systems about {GOOD_CPM:.1f}")


def malignancy_line(scalars: Mapping[str, float], compact: int = 0) -> str:
    """'AUC 0.93 [0.88–0.97] · diameter alone 0.90 [0.85–0.95]: not told apart (-0.02 to
    +0.08)': the malignancy task's AUC beside the baseline it must beat, and whether it does
    (the paired interval of the difference; the console, the cockpit, the summary).
    ``compact`` 1: without the difference's numbers; 2: without the intervals too."""
    def one(name: str, m: mc.Metric) -> str:
        if m.key not in scalars:
            return f"{name} -"
        text = f"{name} {scalars[m.key]:.2f}"
        low, high = m.interval
        if low in scalars and high in scalars and compact < 2:
            text += f" [{scalars[low]:.2f}–{scalars[high]:.2f}]"
        return text

    return (one("AUC", mc.AUC) + " · " + one("diameter alone", mc.AUC_DIAMETER)
            + _against_diameter(scalars, compact))


def _against_diameter(scalars: Mapping[str, float], compact: int = 0) -> str:
    """': beats it' / ': loses to it' / ': not told apart': the paired interval of the AUC
    minus the diameter's, when there is one."""
    low = scalars.get(mc.AUC_VS_DIAMETER_LOW.key)
    high = scalars.get(mc.AUC_VS_DIAMETER_HIGH.key)
    if low is None or high is None:
        return ""
    numbers = "" if compact else f" ({low:+.2f} to {high:+.2f})"
    if low > 0:
        return ": beats it" + numbers
    if high < 0:
        return ": loses to it" + numbers
    return ": not told apart" + numbers
