"""LUNA16's score of a candidate classifier: FROC and its CPM, by the challenge's rules.

- A nodule is a row of annotations.csv. A candidate *hits* a nodule when its centre lies
  within the nodule's radius (diameter_mm / 2, Euclidean, world mm) of the nodule's centre; a
  candidate may hit several nodules. A nodule's score is the highest probability among its
  hits: two hits on one nodule count once.
- A candidate inside an entry of annotations_excluded.csv (an "irrelevant finding") that hits
  no nodule is neither a hit nor a false positive. Entries with a negative diameter (the
  release has some at -1) get 10 mm, as the challenge's evaluation script gives them.
- Every other candidate is a false positive at the thresholds at or below its probability.
- The FROC curve: sensitivity (nodules found / nodules) against the mean number of false
  positives per scan, one point per distinct probability, from (0, 0); the sensitivity at a
  number of FPs per scan is read off the curve by linear interpolation between its points
  (as the challenge's script does with ``np.interp``). CPM: the mean sensitivity at 1/8, 1/4,
  1/2, 1, 2, 4 and 8 FPs per scan.
- Scans are the distinct series among the scored candidates. The nodules counted are the
  annotated nodules of those scans that at least one scored candidate hits; the others
  ("nodules without a candidate") are the candidate list's misses, reported apart and not
  blamed on the model. (The challenge counts them against the sensitivity; so a CPM here is
  the classifier's, not the whole detection system's.)
- The 95 % interval of the CPM: bootstrap over scans (scans drawn with replacement, 1,000
  times by default, seeded), the 2.5th and 97.5th percentiles (luna_core.score.intervals,
  whose draws the AUC's interval shares). Beside it the CPM of chance: what a model that
  scores at random gets on the same candidates.

Matching (which candidate hits which nodule) depends on positions only: ``FrocScorer`` does
it once per candidate set, then scores any number of probability vectors quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from luna_core.score.intervals import chance_cpm, scan_weights

#: False positives per scan at which the CPM averages the sensitivity.
FP_LEVELS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EXCLUDED_UNKNOWN_DIAMETER_MM = 10.0
BOOTSTRAP_RESAMPLES = 1000
#: Curves with at most this many points are bootstrapped all resamples at once (numpy), longer
#: ones a resample at a time (the batched read-off compares every point with every level).
BATCHED_POINTS = 2000
CURVE_POINTS = 64           # points of the FROC curve kept for plots (plus the seven levels)


@dataclass(frozen=True)
class Findings:
    """Annotated nodules and excluded regions, per series: ``{uid: [(x, y, z, diameter_mm)]}``."""

    nodules: dict[str, list[tuple[float, float, float, float]]]
    excluded: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class FrocResult:
    cpm: float | None                 # None when no nodule is counted
    cpm_low: float | None
    cpm_high: float | None
    sensitivity: tuple[float, ...]    # at FP_LEVELS (empty when no nodule is counted)
    curve_fps: tuple[float, ...]      # the FROC curve, thinned for plots
    curve_sens: tuple[float, ...]
    scans: int
    nodules: int                      # nodules counted (hit by at least one candidate)
    nodules_without_candidate: int    # annotated nodules of these scans no candidate hits
    excluded_candidates: int          # candidates neither hit nor false positive
    false_positive_candidates: int    # candidates that can only be false positives
    nodule_scores: tuple[float, ...]  # each counted nodule's score (its best hit)
    nodule_source: str                # "annotations" or "candidates" (no annotations given)
    chance_cpm: float | None = None   # what a model scoring at random gets here, on average

    def sens_at(self, fps: float) -> float | None:
        if not self.sensitivity:
            return None
        return self.sensitivity[FP_LEVELS.index(fps)]


def _radius(diameter: float, excluded: bool) -> float:
    if excluded and diameter < 0:
        return EXCLUDED_UNKNOWN_DIAMETER_MM / 2
    return diameter / 2


class FrocScorer:
    """The matching of one candidate set (``series_uids``, ``centers_xyz`` (n, 3), labels)
    to ``findings``; ``score(probabilities)`` then gives the FROC for that set.
    ``findings=None``: no annotations, each positive candidate is its own nodule."""

    def __init__(self, series_uids: Sequence[str], centers_xyz, is_nodule,
                 findings: Findings | None, scans: Sequence[str] | None = None,
                 count_misses: bool = False) -> None:
        """``scans``: scans scored beyond those of the candidates (an analysed scan without
        a detection); ``count_misses``: a nodule no candidate hits counts, as a miss (the
        detection score, luna_core.score.detection), instead of being left out."""
        uids = list(series_uids)
        xyz = np.asarray(centers_xyz, dtype=np.float64).reshape(len(uids), 3)
        positive = np.asarray(is_nodule, dtype=bool).reshape(len(uids))
        scan_names = sorted(set(uids) | set(scans or ()))
        code = {u: k for k, u in enumerate(scan_names)}
        self.scan_of_candidate = np.fromiter((code[u] for u in uids), dtype=np.int64,
                                             count=len(uids))
        self.scans = len(scan_names)
        self.nodule_source = "candidates" if findings is None else "annotations"
        hit_cand: list[np.ndarray] = []
        hit_nod: list[np.ndarray] = []
        nodule_scan: list[int] = []
        excluded = np.zeros(len(uids), dtype=bool)
        self.nodules_without_candidate = 0
        if findings is None:
            rows = np.flatnonzero(positive)
            hit_cand.append(rows)
            hit_nod.append(np.arange(len(rows)))
            nodule_scan = self.scan_of_candidate[rows].tolist()
        else:
            order = np.argsort(self.scan_of_candidate, kind="stable")
            bounds = np.searchsorted(self.scan_of_candidate[order], np.arange(self.scans + 1))
            for s, uid in enumerate(scan_names):
                rows = order[bounds[s]:bounds[s + 1]]
                c = xyz[rows]
                for x, y, z, d in findings.excluded.get(uid, ()):
                    r = _radius(d, excluded=True)
                    excluded[rows[((c - (x, y, z)) ** 2).sum(axis=1) <= r * r]] = True
                for x, y, z, d in findings.nodules.get(uid, ()):
                    r = _radius(d, excluded=False)
                    hits = rows[((c - (x, y, z)) ** 2).sum(axis=1) <= r * r]
                    if not len(hits):
                        self.nodules_without_candidate += 1
                        if count_misses:         # counted, never found
                            nodule_scan.append(s)
                        continue
                    hit_cand.append(hits)
                    hit_nod.append(np.full(len(hits), len(nodule_scan)))
                    nodule_scan.append(s)
        self.hit_candidate = np.concatenate(hit_cand) if hit_cand else np.zeros(0, np.int64)
        self.hit_nodule = np.concatenate(hit_nod) if hit_nod else np.zeros(0, np.int64)
        self.nodule_scan = np.asarray(nodule_scan, dtype=np.int64)
        is_hit = np.zeros(len(uids), dtype=bool)
        is_hit[self.hit_candidate] = True
        self.false_positive = ~is_hit & ~excluded
        self.excluded_count = int((excluded & ~is_hit).sum())

    @property
    def nodules(self) -> int:
        return len(self.nodule_scan)

    def nodule_scores(self, probabilities) -> np.ndarray:
        """Each counted nodule's score: the highest probability among its hits."""
        p = np.asarray(probabilities, dtype=np.float64)
        scores = np.full(self.nodules, -np.inf)
        np.maximum.at(scores, self.hit_nodule, p[self.hit_candidate])
        return scores

    def _curve(self, p: np.ndarray) -> _Curve:
        return _Curve(p[self.false_positive], self.scan_of_candidate[self.false_positive],
                      self.nodule_scores(p), self.nodule_scan, self.scans)

    def cpm_draws(self, probabilities, weights: np.ndarray) -> np.ndarray:
        """The CPM of these probabilities under each scan weighting (rows of ``weights``,
        intervals.scan_weights); NaN where a weighting draws no nodule. Two probability
        vectors scored with the same ``weights`` give a paired bootstrap."""
        return _cpm_draws(self._curve(np.asarray(probabilities, dtype=np.float64)), weights)

    def score(self, probabilities, bootstrap: int = BOOTSTRAP_RESAMPLES,
              seed: int | Sequence[int] = 0) -> FrocResult:
        p = np.asarray(probabilities, dtype=np.float64)
        scores = self.nodule_scores(p)
        curve = self._curve(p)
        ones = np.ones(self.scans)
        if self.nodules:
            fps, sens = curve.points(ones)
            at_levels = _read_off(fps, sens, np.asarray(FP_LEVELS))
            cpm = float(at_levels.mean())
            low, high = _bootstrap(curve, self.scans, bootstrap, seed)
            thin_fps, thin_sens = _thin(fps, sens)
        else:
            at_levels, cpm, low, high = np.zeros(0), None, None, None
            thin_fps, thin_sens = [], []
        return FrocResult(
            cpm=cpm, cpm_low=low, cpm_high=high,
            sensitivity=tuple(float(v) for v in at_levels),
            curve_fps=tuple(thin_fps), curve_sens=tuple(thin_sens),
            scans=self.scans, nodules=self.nodules,
            nodules_without_candidate=self.nodules_without_candidate,
            excluded_candidates=self.excluded_count,
            false_positive_candidates=int(self.false_positive.sum()),
            nodule_scores=tuple(float(v) for v in scores),
            nodule_source=self.nodule_source,
            chance_cpm=(chance_cpm(self.scans, int(self.false_positive.sum()), FP_LEVELS)
                        if self.nodules else None))


class _Curve:
    """False positives and nodule scores in one order (probability, high to low), so that a
    weighting of the scans (a bootstrap resample) gives the curve by two cumulative sums.

    Only the start of the order matters for the seven levels: a resample's curve is summed
    up to ``head`` items (where, unweighted, twice the last level's FPs per scan are
    reached) and over all items only when its FPs per scan do not pass the last level there.
    """

    def __init__(self, fp_probs, fp_scan, nodule_scores, nodule_scan, scans: int) -> None:
        found = np.isfinite(nodule_scores)     # a nodule no candidate hits is never found
        probs = np.concatenate([fp_probs, nodule_scores[found]])
        order = np.argsort(-probs, kind="stable")
        is_fp = np.concatenate([np.ones(len(fp_probs), bool),
                                np.zeros(int(found.sum()), bool)])[order]
        item_scan = np.concatenate([fp_scan, np.asarray(nodule_scan)[found]])[order]
        sorted_probs = probs[order]
        # a threshold at each distinct probability: the curve's points are where ties end
        last = np.ones(len(sorted_probs), dtype=bool)
        last[:-1] = sorted_probs[1:] != sorted_probs[:-1]
        ends = np.flatnonzero(last)
        self.fp_scan = item_scan[is_fp]                   # FPs in order
        self.fp_upto = np.cumsum(is_fp)[ends]             # FPs at or above each point
        self.nod_scan = item_scan[~is_fp]                 # nodules in order
        self.nod_upto = np.cumsum(~is_fp)[ends]
        self.nodule_scan = nodule_scan
        enough = 2 * FP_LEVELS[-1] * scans
        self.head = int(np.searchsorted(self.fp_upto, enough, side="right")) + 1

    def points(self, scan_weight: np.ndarray, head: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(FPs per scan, sensitivity) from (0, 0), for scans weighted ``scan_weight``;
        ``head``: the first points only."""
        fp_upto, nod_upto = self.fp_upto[:head], self.nod_upto[:head]
        fp_w = scan_weight[self.fp_scan[:fp_upto[-1] if len(fp_upto) else 0]]
        fp = np.concatenate([[0.0], np.cumsum(fp_w)])[fp_upto]
        found = np.concatenate([[0.0], np.cumsum(scan_weight[self.nod_scan])])[nod_upto]
        nodules = scan_weight[self.nodule_scan].sum()
        fps = np.concatenate([[0.0], fp / scan_weight.sum()])
        sens = np.concatenate([[0.0], found / nodules if nodules else found * 0])
        return fps, sens

    def levels_many(self, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """``levels`` for many weightings at once (rows of ``weights``): (rows, levels).
        The same numbers as ``levels`` row by row, without a Python loop per resample."""
        out = np.empty((len(weights), len(levels)))
        block = max(1, int(2_000_000 // max(1, min(self.head, len(self.fp_upto)) + 1)))
        for start in range(0, len(weights), block):
            w = weights[start:start + block]
            fps, sens = self._points_many(w, self.head)
            short = fps[:, -1] <= levels[-1]
            if short.any() and self.head < len(self.fp_upto):
                full_fps, full_sens = self._points_many(w[short])
                rows = np.flatnonzero(short)
                out[start + rows] = _read_off_many(full_fps, full_sens, levels)
                keep = np.flatnonzero(~short)
                out[start + keep] = _read_off_many(fps[keep], sens[keep], levels)
            else:
                out[start:start + len(w)] = _read_off_many(fps, sens, levels)
        return out

    def _points_many(self, w: np.ndarray, head: int | None = None):
        fp_upto, nod_upto = self.fp_upto[:head], self.nod_upto[:head]
        n_fp = int(fp_upto[-1]) if len(fp_upto) else 0
        zero = np.zeros((len(w), 1))
        fp = np.concatenate([zero, np.cumsum(w[:, self.fp_scan[:n_fp]], axis=1)],
                            axis=1)[:, fp_upto]
        found = np.concatenate([zero, np.cumsum(w[:, self.nod_scan], axis=1)],
                               axis=1)[:, nod_upto]
        nodules = w[:, self.nodule_scan].sum(axis=1, keepdims=True)
        fps = np.concatenate([zero, fp / w.sum(axis=1, keepdims=True)], axis=1)
        sens = np.concatenate([zero, np.divide(found, nodules, out=np.zeros_like(found),
                                               where=nodules > 0)], axis=1)
        return fps, sens

    def levels(self, scan_weight: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The sensitivity at ``levels`` (at most the last of FP_LEVELS) for this weighting."""
        fps, sens = self.points(scan_weight, self.head)
        if fps[-1] <= levels[-1] and self.head < len(self.fp_upto):
            fps, sens = self.points(scan_weight)
        return _read_off(fps, sens, levels)


def _read_off(fps: np.ndarray, sens: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The sensitivity at each level: at the last point with no more FPs per scan than the
    level, interpolated linearly towards the next point; the last point's beyond the curve."""
    k = np.searchsorted(fps, levels, side="right") - 1
    nxt = np.minimum(k + 1, len(fps) - 1)
    span = fps[nxt] - fps[k]
    frac = np.where(span > 0, (levels - fps[k]) / np.where(span > 0, span, 1.0), 0.0)
    return sens[k] + frac * (sens[nxt] - sens[k])


def _read_off_many(fps: np.ndarray, sens: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``_read_off`` for each row (each row's FPs per scan non-decreasing)."""
    rows = np.arange(len(fps))[:, None]
    k = (fps[:, :, None] <= levels[None, None, :]).sum(axis=1) - 1       # (rows, levels)
    nxt = np.minimum(k + 1, fps.shape[1] - 1)
    f0, f1, s0, s1 = fps[rows, k], fps[rows, nxt], sens[rows, k], sens[rows, nxt]
    span = f1 - f0
    frac = np.divide(levels[None, :] - f0, span, out=np.zeros_like(span), where=span > 0)
    return s0 + frac * (s1 - s0)


def _bootstrap(curve: _Curve, scans: int, resamples: int,
               seed: int | Sequence[int]) -> tuple[float | None, float | None]:
    if resamples <= 0:
        return None, None
    cpms = _cpm_draws(curve, scan_weights(scans, resamples, seed))
    cpms = cpms[~np.isnan(cpms)]
    if not len(cpms):
        return None, None
    low, high = np.percentile(cpms, [2.5, 97.5])
    return float(low), float(high)


def _cpm_draws(curve: _Curve, weights: np.ndarray) -> np.ndarray:
    """The CPM under each scan weighting (a row of ``weights``); NaN where no nodule is
    drawn."""
    cpms = np.full(len(weights), np.nan)
    drawn = weights[:, curve.nodule_scan].sum(axis=1) > 0     # no nodule drawn: no CPM
    if not drawn.any():
        return cpms
    levels = np.asarray(FP_LEVELS)
    if min(curve.head, len(curve.fp_upto)) <= BATCHED_POINTS:    # small sets: all at once
        cpms[drawn] = curve.levels_many(weights[drawn], levels).mean(axis=1)
    else:                                   # large ones: a resample at a time is quicker
        cpms[drawn] = [curve.levels(w, levels).mean() for w in weights[drawn]]
    return cpms


def _thin(fps: np.ndarray, sens: np.ndarray) -> tuple[list[float], list[float]]:
    """At most ``CURVE_POINTS`` points spread evenly on a log axis of FPs per scan over
    [1/16, 16], read off the curve the same way as the seven levels."""
    grid = np.geomspace(1 / 16, 16, CURVE_POINTS)
    return grid.tolist(), _read_off(fps, sens, grid).tolist()
