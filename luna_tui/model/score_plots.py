"""What the diagnostics view (5) shows of a validation's score, as plain values: the FROC on a
log axis, the PR curve, the prediction histograms and the one line that reads them, the
confusion counts. No Textual here; the score is the event's dict (luna_core.score's
``ValidationScore.to_dict``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from luna_core.run import metric_catalog as mc
from luna_core.run import verdict

#: The plots, in the order the `n` key cycles through them on a small screen.
PLOTS = ("froc", "pr", "histograms", "confusion")
PLOT_NAMES = {"froc": "FROC", "pr": "PR curve", "histograms": "prediction histograms",
              "confusion": "confusion counts"}
#: All four at once from this size on (2 x 2, each plot at least 10 rows of plotting area).
GRID_COLS, GRID_ROWS = 120, 36
LOW = 0.1                  # "scored below 0.1": ranked with the background


def grid(width: int, height: int) -> bool:
    return width >= GRID_COLS and height >= GRID_ROWS


def froc_points(score: Mapping) -> tuple[list[float], list[float]]:
    """(log2 of FPs per scan, sensitivity) of the thinned curve."""
    fps, sens = score.get("curve_fps") or [], score.get("curve_sens") or []
    return [math.log2(f) for f in fps if f > 0], [s for f, s in zip(fps, sens) if f > 0]


def froc_marks(score: Mapping) -> tuple[list[float], list[float]]:
    """The seven levels (1/8 ... 8 FPs per scan) whose mean is the CPM."""
    levels, sens = score.get("fp_levels") or [], score.get("sensitivity") or []
    return [math.log2(f) for f in levels], list(sens)


def froc_ticks() -> tuple[list[float], list[str]]:
    labels = ["1/16", "1/8", "1/4", "1/2", "1", "2", "4", "8", "16"]
    return [float(k) for k in range(-4, 5)], labels


def class_share(counts: list[int]) -> list[float]:
    """Each bin's share of its class, in %."""
    total = sum(counts)
    return [100.0 * c / total if total else 0.0 for c in counts]


def bin_centres(score: Mapping) -> list[float]:
    bins = int(score.get("hist_bins") or len(score.get("hist_pos") or []) or 1)
    return [(k + 0.5) / bins for k in range(bins)]


def _below(counts: list[int], bins: int, limit: float) -> int:
    return sum(c for k, c in enumerate(counts) if (k + 1) / bins <= limit + 1e-9)


def reading(score: Mapping) -> str:
    """One line on what the histograms show: where the nodules' probabilities lie against
    the background's."""
    pos, neg = list(score.get("hist_pos") or []), list(score.get("hist_neg") or [])
    bins = int(score.get("hist_bins") or len(pos) or 1)
    n_pos, n_neg = sum(pos), sum(neg)
    if not n_pos:
        return "no nodule in this validation: nothing to rank"
    low_pos = _below(pos, bins, LOW)
    high_pos = n_pos - _below(pos, bins, 0.5 - 1e-9)
    low_neg = 100.0 * _below(neg, bins, LOW) / n_neg if n_neg else 0.0
    if 2 * low_pos >= n_pos:
        return (f"nodules scored below {LOW:g}: {low_pos} of {n_pos} — the model ranks them "
                f"with the background (where {low_neg:.0f} % of non-nodules are)")
    if 2 * high_pos >= n_pos:
        pos_share = 100.0 * high_pos / n_pos
        neg_share = 100.0 * (n_neg - _below(neg, bins, 0.5 - 1e-9)) / n_neg if n_neg else 0.0
        if neg_share >= pos_share / 2:      # the threshold passes the background as well
            return (f"nodules scored 0.5 or more: {high_pos} of {n_pos} ({pos_share:.0f} %) "
                    f"— but so do {neg_share:.0f} % of non-nodules: the threshold does not "
                    f"separate them")
        return (f"nodules scored 0.5 or more: {high_pos} of {n_pos} — most are found at the "
                f"threshold, with {neg_share:.1f} % of non-nodules")
    return (f"nodules between {LOW:g} and 0.5: {n_pos - low_pos - high_pos} of {n_pos} — "
            f"ranked above most of the background ({low_neg:.0f} % of non-nodules below "
            f"{LOW:g}) but under the threshold")


def score_metrics(score: Mapping) -> dict[str, float | None]:
    """A validation's score (the event's dict) as the metric keys the verdict reads."""
    return {mc.AUC.key: score.get("auc"), mc.AUC_LOW.key: score.get("auc_low"),
            mc.AUC_HIGH.key: score.get("auc_high"), mc.CPM.key: score.get("cpm"),
            mc.CPM_CHANCE.key: score.get("chance_cpm")}


def cpm_history(snap) -> list[tuple[int, float | None]]:
    """(epoch, CPM) of each validation so far, oldest first."""
    return [(p.epoch, p.cpm) for p in snap.history.get("val", ())]


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def confusion_lines(score: Mapping, before: Mapping | None, epoch: int,
                    before_epoch: int | None) -> list[str]:
    """The confusion counts at the threshold (the validation before in brackets), then AUC,
    AP and what the score counted."""
    c = score.get("confusion") or {}
    b = (before or {}).get("confusion") or {}

    def cell(key: str) -> str:
        now = f"{c.get(key, 0):,}"
        return now if key not in b else f"{now} ({b[key]:,})"

    rows = [("", "predicted nodule", "predicted not"),
            ("nodule", cell("tp"), cell("fn")),
            ("not nodule", cell("fp"), cell("tn"))]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    out = [f"at probability {score.get('threshold', 0.5):g}, val E{epoch}"
           + (f" (E{before_epoch} in brackets)" if before_epoch is not None else "")]
    for r in rows:
        out.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}")
    auc = f"AUC {_num(score.get('auc'))}"
    if score.get("auc_low") is not None and score.get("auc_high") is not None:
        auc += f" [{score['auc_low']:.2f}–{score['auc_high']:.2f}]"
    ap = f"AP {_num(score.get('average_precision'))}"
    if before:
        auc += f" ({_num(before.get('auc'))})"
        ap += f" ({_num(before.get('average_precision'))})"
    out.append(f"{auc} · {ap}")
    counted = (f"{score.get('nodules', 0)} nodules in {score.get('scans', 0)} scans "
               f"counted")
    if score.get("nodules_without_candidate"):
        counted += f"; {score['nodules_without_candidate']} more with no validation candidate"
    if score.get("excluded_candidates"):
        counted += f"; {score['excluded_candidates']} candidates in excluded findings"
    if score.get("nodule_source") == "candidates":
        counted += " (no annotations: each positive candidate is a nodule)"
    out.append(counted)
    if score.get("cpm") is not None:
        out.append(verdict.cpm_meaning(score_metrics(score)))
    return out


def froc_title(score: Mapping, epoch: int, before: Mapping | None,
               before_epoch: int | None) -> tuple[str, ...]:
    cpm = score.get("cpm")
    if cpm is None:
        return (f"FROC E{epoch}: no nodule to score", "FROC")
    ci = ""
    if score.get("cpm_low") is not None and score.get("cpm_high") is not None:
        ci = f" [{score['cpm_low']:.2f}–{score['cpm_high']:.2f}]"
    prev = ""
    if before is not None and before.get("cpm") is not None:
        prev = f" · E{before_epoch} {before['cpm']:.3f}"
    return (f"FROC val E{epoch} · CPM {cpm:.3f}{ci}{prev}", f"FROC E{epoch} · CPM {cpm:.3f}",
            f"CPM {cpm:.3f}", "FROC")
