"""Per-class metrics of one phase of one epoch, from the per-sample metrics tensor.

The loop fills a (3, N) tensor on the device (label, positive probability, loss per sample)
and hands it over once per phase, so there is no host sync per batch.
"""

from __future__ import annotations

import numpy as np

from luna_core.run.metric_catalog import (
    CORRECT,
    CORRECT_NEG,
    CORRECT_POS,
    F1,
    LOSS,
    LOSS_NEG,
    LOSS_POS,
    PRECISION,
    RECALL,
)

METRICS_LABEL_NDX = 0
METRICS_PRED_NDX = 1
METRICS_LOSS_NDX = 2
METRICS_SIZE = 3

CLASSIFICATION_THRESHOLD = 0.5


def _mean(values: np.ndarray) -> float:
    # An empty class has no loss to average: 0.0, never nan and never a RuntimeWarning.
    return float(values.mean()) if values.size else 0.0


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def compute_metrics(metrics_a: np.ndarray, threshold: float = CLASSIFICATION_THRESHOLD) -> dict:
    """Return the TensorBoard scalars plus the counts. ``metrics_a`` is (3, N) float.

    Conventions for degenerate cases (documented in the README): the loss and % correct of an
    empty class are 0.0; precision is 0.0 when nothing was predicted positive; recall is 0.0
    when there are no positives; F1 is 0.0 when precision + recall is 0.
    """
    labels = metrics_a[METRICS_LABEL_NDX]
    preds = metrics_a[METRICS_PRED_NDX]
    losses = metrics_a[METRICS_LOSS_NDX]

    neg_label = labels <= threshold
    neg_pred = preds <= threshold
    pos_label = ~neg_label
    pos_pred = ~neg_pred

    neg_count = int(neg_label.sum())
    pos_count = int(pos_label.sum())
    true_neg = int((neg_label & neg_pred).sum())
    true_pos = int((pos_label & pos_pred).sum())
    false_pos = neg_count - true_neg

    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / pos_count if pos_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    scalars = {
        LOSS.key: _mean(losses),
        LOSS_NEG.key: _mean(losses[neg_label]),
        LOSS_POS.key: _mean(losses[pos_label]),
        CORRECT.key: _percent(true_pos + true_neg, labels.size),
        CORRECT_NEG.key: _percent(true_neg, neg_count),
        CORRECT_POS.key: _percent(true_pos, pos_count),
        PRECISION.key: precision,
        RECALL.key: recall,
        F1.key: f1,
    }
    return {
        "metrics": scalars,
        "neg_correct": true_neg,
        "neg_count": neg_count,
        "pos_correct": true_pos,
        "pos_count": pos_count,
    }


def format_metric_lines(epoch: int, phase: str, m: dict) -> list[str]:
    """The book's three log lines (plus precision/recall/F1 on the first, as in ch. 12)."""
    s = m["metrics"]
    return [
        f"E{epoch} {phase:8} {s[LOSS.key]:.4f} loss, {s[CORRECT.key]:-5.1f}% correct, "
        f"{s[PRECISION.key]:.4f} precision, {s[RECALL.key]:.4f} recall, "
        f"{s[F1.key]:.4f} f1 score",
        f"E{epoch} {phase + '_neg':8} {s[LOSS_NEG.key]:.4f} loss, "
        f"{s[CORRECT_NEG.key]:-5.1f}% correct ({m['neg_correct']} of {m['neg_count']})",
        f"E{epoch} {phase + '_pos':8} {s[LOSS_POS.key]:.4f} loss, "
        f"{s[CORRECT_POS.key]:-5.1f}% correct ({m['pos_correct']} of {m['pos_count']})",
    ]
