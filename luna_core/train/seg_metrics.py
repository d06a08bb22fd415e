"""The segmentation task's loss and numbers (the book's ch. 13).

Loss, per slice: the soft Dice loss ``1 - (2 Σ p·y + 1) / (Σ p + Σ y + 1)`` plus 8 × the same
loss of the prediction on the label's pixels only (``p·y`` against ``y``: a loss on false
negatives alone); a batch's loss is the mean of the slices'. A pixel is called nodule above
0.5. Per slice the loop keeps its loss and its true positive, false negative and false
positive pixels (``METRICS_*`` rows); a phase's numbers sum the pixels over every slice:

- ``percent_all/tp``, ``/fn``, ``/fp`` as % of the label's pixels (FP can pass 100 %: whole slices);
- pixel precision TP/(TP+FP), recall TP/(TP+FN), F1 (each 0.0 when undefined, as the
  classifier's);
- Dice: the mean over slices of each slice's Dice 2TP/(2TP+FP+FN) (1 for a slice with neither
  label nor prediction), so that a few big nodules do not stand for every slice as they do
  in the pixel F1.
"""

from __future__ import annotations

import numpy as np
import torch

from luna_core.run.metric_catalog import (
    DICE,
    F1,
    LOSS,
    PIXEL_FN,
    PIXEL_FP,
    PIXEL_TP,
    PRECISION,
    RECALL,
)

METRICS_LOSS_NDX = 0
METRICS_TP_NDX = 1
METRICS_FN_NDX = 2
METRICS_FP_NDX = 3
METRICS_SIZE = 4
FN_LOSS_WEIGHT = 8.0
PIXEL_THRESHOLD = 0.5


def dice_loss(prediction_g: torch.Tensor, label_g: torch.Tensor,
              epsilon: float = 1.0) -> torch.Tensor:
    """Per slice (N,) soft Dice loss of (N, 1, H, W) probabilities against a 0/1 label."""
    label = label_g.sum(dim=(1, 2, 3))
    prediction = prediction_g.sum(dim=(1, 2, 3))
    correct = (prediction_g * label_g).sum(dim=(1, 2, 3))
    return 1 - (2 * correct + epsilon) / (prediction + label + epsilon)


def seg_loss(prediction_g: torch.Tensor, label_g: torch.Tensor) -> torch.Tensor:
    """Per slice (N,): Dice loss + 8 × the Dice loss on the label's pixels (the book's)."""
    return dice_loss(prediction_g, label_g) + FN_LOSS_WEIGHT * dice_loss(
        prediction_g * label_g, label_g)


def pixel_counts(prediction_g: torch.Tensor, label_g: torch.Tensor) -> torch.Tensor:
    """(3, N): each slice's true positive, false negative and false positive pixels."""
    called = prediction_g > PIXEL_THRESHOLD
    label = label_g > 0.5
    dims = (1, 2, 3)
    return torch.stack([(called & label).sum(dim=dims), (~called & label).sum(dim=dims),
                        (called & ~label).sum(dim=dims)]).float()


def compute_seg_metrics(metrics_a: np.ndarray) -> dict:
    """A phase's numbers from the per-slice rows (the EpochMetrics event's fields)."""
    m = np.asarray(metrics_a, dtype=np.float64)
    tp, fn, fp = (float(m[k].sum()) for k in (METRICS_TP_NDX, METRICS_FN_NDX, METRICS_FP_NDX))
    label = tp + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / label if label else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = 2 * m[METRICS_TP_NDX] + m[METRICS_FP_NDX] + m[METRICS_FN_NDX]
    per_slice = np.divide(2 * m[METRICS_TP_NDX], denom, out=np.ones_like(denom),
                          where=denom > 0)
    dice = float(per_slice.mean()) if m.shape[1] else 0.0

    def share(v: float) -> float:
        return 100.0 * v / label if label else 0.0

    metrics = {
        LOSS.key: float(m[METRICS_LOSS_NDX].mean()) if m.shape[1] else 0.0,
        PIXEL_TP.key: share(tp), PIXEL_FN.key: share(fn), PIXEL_FP.key: share(fp),
        PRECISION.key: precision, RECALL.key: recall, F1.key: f1, DICE.key: dice,
    }
    # the EpochMetrics event's counts: the label's pixels found (as the classifier's nodules)
    return {"metrics": metrics, "pos_correct": int(tp), "pos_count": int(label),
            "neg_correct": 0, "neg_count": 0}


def format_seg_lines(epoch: int, phase: str, result: dict) -> list[str]:
    """The book's console lines for a phase."""
    m = result["metrics"]
    loss = m[LOSS.key]
    return [
        f"E{epoch} {phase:8} {loss:.4f} loss, {m[PRECISION.key]:.4f} precision, "
        f"{m[RECALL.key]:.4f} recall, {m[F1.key]:.4f} f1 score, {m[DICE.key]:.4f} dice",
        f"E{epoch} {phase + '_all':8} {loss:.4f} loss, {m[PIXEL_TP.key]:-5.1f}% tp, "
        f"{m[PIXEL_FN.key]:-5.1f}% fn, {m[PIXEL_FP.key]:-9.1f}% fp "
        f"({result['pos_correct']} of {result['pos_count']} label pixels found)",
    ]
