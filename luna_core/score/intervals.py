"""Bootstrap over validation scans, shared by the CPM's and the AUC's 95 % intervals.

Candidates of one scan are not independent (one scan's vessels look alike), so the unit
resampled is the scan: a resample draws the scans with replacement and weights each
candidate by how often its scan was drawn. The CPM (luna_core.score.froc) and the AUC
(here) are read off the same draws for the same seed, so their intervals are paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scan_weights(scans: int, resamples: int, seed: int | Sequence[int]) -> np.ndarray:
    """(resamples, scans): how often each scan is drawn in each resample."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(scans, np.full(scans, 1.0 / scans), size=resamples)
    return counts.astype(np.float64)


def weighted_auc(p, labels, weight) -> float | None:
    """ROC AUC with a weight per sample (ties count half): the weighted share of
    (nodule, non-nodule) pairs ranked the right way round; None when a class weighs 0."""
    labels = np.asarray(labels, dtype=bool)
    _values, inverse = np.unique(np.asarray(p, dtype=np.float64), return_inverse=True)
    return _auc(inverse, labels, np.asarray(weight, dtype=np.float64))


def _auc(inverse: np.ndarray, labels: np.ndarray, weight: np.ndarray) -> float | None:
    size = int(inverse.max()) + 1 if len(inverse) else 0
    pos = np.bincount(inverse, weights=weight * labels, minlength=size)
    neg = np.bincount(inverse, weights=weight * ~labels, minlength=size)
    w_pos, w_neg = pos.sum(), neg.sum()
    if w_pos <= 0 or w_neg <= 0:
        return None
    below = np.cumsum(neg) - neg                  # non-nodules scored lower than this value
    return float((pos * (below + 0.5 * neg)).sum() / (w_pos * w_neg))


def auc_interval(p, labels, scan_of_sample, weights: np.ndarray
                 ) -> tuple[float | None, float | None]:
    """The AUC's 95 % interval over the scan resamples ``weights`` (scan_weights):
    ``scan_of_sample`` is each sample's scan as a column of ``weights``."""
    labels = np.asarray(labels, dtype=bool)
    scan_of_sample = np.asarray(scan_of_sample, dtype=np.int64)
    if len(weights) == 0 or labels.all() or not labels.any():
        return None, None
    _values, inverse = np.unique(np.asarray(p, dtype=np.float64), return_inverse=True)
    aucs = (_auc(inverse, labels, w[scan_of_sample]) for w in weights)
    drawn = np.array([a for a in aucs if a is not None])
    if len(drawn) == 0:
        return None, None
    low, high = np.percentile(drawn, [2.5, 97.5])
    return float(low), float(high)


def auc_difference_interval(p_a, p_b, labels, scan_of_sample, weights: np.ndarray
                            ) -> tuple[float | None, float | None]:
    """The 95 % interval of AUC(``p_a``) − AUC(``p_b``) over the same resamples (paired: each
    draw scores both rankings of the same samples)."""
    labels = np.asarray(labels, dtype=bool)
    scan_of_sample = np.asarray(scan_of_sample, dtype=np.int64)
    if len(weights) == 0 or labels.all() or not labels.any():
        return None, None
    inv_a = np.unique(np.asarray(p_a, dtype=np.float64), return_inverse=True)[1]
    inv_b = np.unique(np.asarray(p_b, dtype=np.float64), return_inverse=True)[1]
    drawn = []
    for w in weights:
        a = _auc(inv_a, labels, w[scan_of_sample])
        b = _auc(inv_b, labels, w[scan_of_sample])
        if a is not None and b is not None:
            drawn.append(a - b)
    if not drawn:
        return None, None
    low, high = np.percentile(drawn, [2.5, 97.5])
    return float(low), float(high)


def chance_cpm(scans: int, false_positive_candidates: int,
               fp_levels: Sequence[float]) -> float | None:
    """The CPM a model that scores at random gets on average: at f false positives per scan
    it has passed f x scans of the non-nodule candidates, and as large a share of the
    nodules (each nodule's best hit makes it a little more in truth)."""
    if scans <= 0 or false_positive_candidates <= 0:
        return None
    share = [min(1.0, f * scans / false_positive_candidates) for f in fp_levels]
    return float(sum(share) / len(share))
