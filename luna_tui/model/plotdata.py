"""What the trend plots draw, as plain numbers: smoothing, clipped outliers, best values and the
x axis. No Textual or plotext here, so each rule is tested on its own."""

from __future__ import annotations

import math
from dataclasses import dataclass

from luna_core.run.metric_catalog import best_point

#: The smoothing the `s` key turns on (TensorBoard's slider; 0 = off).
SMOOTHING = 0.9
#: Colour-blind-safe (Okabe & Ito): one colour per phase, one marker per series, so lines stay
#: apart in 16 colours and under NO_COLOR as well.
TRN_COLOR = (230, 159, 0)        # orange
VAL_COLOR = (86, 180, 233)       # sky blue
RAW_COLOR = (150, 150, 150)      # the unsmoothed batch loss behind its average
CLIP_COLOR = (213, 94, 0)        # vermillion
SERIES = {                       # (phase, what) -> (colour, marker)
    ("trn", "all"): (TRN_COLOR, "•"),
    ("trn", "pos"): (TRN_COLOR, "+"),
    ("val", "all"): (VAL_COLOR, "x"),
    ("val", "pos"): (VAL_COLOR, "o"),
}
CPM_SERIES = (VAL_COLOR, "◆")   # LUNA16's CPM of each validation (x 100 beside the % plot)
CLIP_MARKER = "▲"
BASE_COLOR = (204, 121, 167)     # reddish purple: the baseline run
BASE_MARKER = "◇"


@dataclass(frozen=True)
class PlotOptions:
    """The plot keys' state: `s` smoothing, `y` log scale (None: decided from the data), `x`
    training samples instead of epochs."""

    smoothing: float = SMOOTHING
    log_y: bool | None = None
    x_samples: bool = False


def finite(v) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so that the first
    points are not pulled towards zero (``weight`` 0 returns the values)."""
    if weight <= 0:
        return list(values)
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return out


def clip_limit(values: list[float]) -> float | None:
    """An upper y limit that keeps a few huge values (the first batches' loss, a spike) from
    squashing the rest, or None when nothing stands out: the 95th percentile plus the range
    below it, when the maximum is beyond that."""
    if len(values) < 10:
        return None
    ordered = sorted(values)
    q95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    limit = q95 + (q95 - ordered[0])
    return limit if ordered[-1] > limit and limit > ordered[0] else None


def clipped(xs: list[float], ys: list[float], limit: float | None):
    """(ys with values above ``limit`` drawn at it, the x and y of those clipped points)."""
    if limit is None:
        return ys, [], []
    cx = [x for x, y in zip(xs, ys, strict=True) if y > limit]
    return [min(y, limit) for y in ys], cx, [limit] * len(cx)


def best(points: list[tuple[int, float]], lowest: bool) -> tuple[int, float] | None:
    """(epoch, value) of the best finite point, ``lowest`` the metric's ``lower`` in the
    catalog (the lowest loss, the highest % correct)."""
    return best_point(((e, v) for e, v in points if finite(v)), not lowest)


def value_title(name: str, phase: str, points: list[tuple[int, float]], lowest: bool,
                fmt: str) -> str:
    """'loss per epoch · val 0.021 · best 0.019 E3' (just the name before any data)."""
    if not points:
        return name
    now = points[-1][1]
    b = best(points, lowest)
    text = f"{name} · {phase} {format(now, fmt)}"
    if b is not None:
        text += f" · best {format(b[1], fmt)} E{b[0]}"
    return text


def x_of_epoch(epoch: float, samples_per_epoch: int | None, opts: PlotOptions) -> float:
    """An epoch position on the x axis: epochs, or training samples when asked and known."""
    if opts.x_samples and samples_per_epoch:
        return epoch * samples_per_epoch
    return epoch


def nice_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """At most ``most`` round ticks (1, 2 or 5 times a power of ten apart) within lo..hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    raw = (hi - lo) / max(1, most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + k * step, 10) for k in range(max(0, count))]


def count_label(n: float) -> str:
    """'500', '2k', '12.5k', '1.2M': a number of samples as a tick label."""
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def log_axis(values: list[float]) -> tuple[list[int], list[str], int, int] | None:
    """Decade ticks for log10 of positive ``values``: (ticks, labels, low, high), or None."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return None
    lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    hi = max(hi, lo + 1)
    ticks = list(range(lo, hi + 1))
    return ticks, [f"{10.0 ** t:g}" for t in ticks], lo, hi


def wants_log(values: list[float], choice: bool | None) -> bool:
    """Log scale: as the user chose (`y`), else when the positive values span > 30x."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if choice is not None:
        return choice and bool(positive)
    return bool(positive) and max(positive) / min(positive) > 30
