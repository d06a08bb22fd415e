"""The malignancy task's score (the book's ch. 14): the ROC AUC of benign against malignant
validation nodules, with a 95 % interval from a bootstrap over the nodules (seeded), and
beside it the baseline the book says a model must beat: the AUC of ranking the same nodules
by their annotated diameter alone (0.901 in the book), with its interval from the same draws,
and the paired interval of the difference (the model's AUC minus the diameter's in each
draw), which says whether the model beats the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from luna_core.run.metric_catalog import (
    AUC,
    AUC_DIAMETER,
    AUC_DIAMETER_HIGH,
    AUC_DIAMETER_LOW,
    AUC_HIGH,
    AUC_LOW,
    AUC_VS_DIAMETER_HIGH,
    AUC_VS_DIAMETER_LOW,
)
from luna_core.run.verdict import malignancy_line
from luna_core.score.froc import BOOTSTRAP_RESAMPLES
from luna_core.score.intervals import (
    auc_difference_interval,
    auc_interval,
    scan_weights,
    weighted_auc,
)

__all__ = ["malignancy_line", "malignancy_scalars"]


def malignancy_scalars(p_malignant, is_malignant, diameter_mm,
                       bootstrap: int = BOOTSTRAP_RESAMPLES,
                       seed: int | Sequence[int] = 0) -> dict[str, float]:
    """{AUC, its interval, the diameter's AUC and its interval, the difference's interval}
    (catalog keys); a value left out when there is no telling (one class only, no
    resample)."""
    p = np.asarray(p_malignant, dtype=np.float64)
    labels = np.asarray(is_malignant, dtype=bool)
    diameter = np.asarray(diameter_mm, dtype=np.float64)
    ones = np.ones(len(p))
    out: dict[str, float] = {}
    for key, score in ((AUC.key, p), (AUC_DIAMETER.key, diameter)):
        value = weighted_auc(score, labels, ones) if len(p) else None
        if value is not None:
            out[key] = value
    if bootstrap > 0 and AUC.key in out:
        each = np.arange(len(p))            # the unit resampled: the nodule
        weights = scan_weights(len(p), bootstrap, seed)
        for (low, high), score in (((AUC_LOW.key, AUC_HIGH.key), p),
                                   ((AUC_DIAMETER_LOW.key, AUC_DIAMETER_HIGH.key), diameter)):
            lo, hi = auc_interval(score, labels, each, weights)
            if lo is not None:
                out[low], out[high] = lo, hi
        lo, hi = auc_difference_interval(p, diameter, labels, each, weights)
        if lo is not None:
            out[AUC_VS_DIAMETER_LOW.key], out[AUC_VS_DIAMETER_HIGH.key] = lo, hi
    return out
