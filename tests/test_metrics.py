"""compute_metrics / format_metric_lines against counts worked out by hand.

The loop hands over a (3, N) float32 array: label (0 or 1), positive probability, loss per
sample. A label or probability <= 0.5 counts as negative.
"""

import math
import warnings

import numpy as np
import pytest

from luna_core.train.metrics import (
    METRICS_LABEL_NDX,
    METRICS_LOSS_NDX,
    METRICS_PRED_NDX,
    METRICS_SIZE,
    compute_metrics,
    format_metric_lines,
)

SCALAR_TAGS = {"loss/all", "loss/neg", "loss/pos", "correct/all", "correct/neg",
               "correct/pos", "pr/precision", "pr/recall", "pr/f1_score"}


def _metrics_a(rows) -> np.ndarray:
    """rows of (label, probability, loss) -> (3, N) float32, as the loop fills it."""
    a = np.zeros((METRICS_SIZE, len(rows)), dtype=np.float32)
    for j, (label, pred, loss) in enumerate(rows):
        a[METRICS_LABEL_NDX, j] = label
        a[METRICS_PRED_NDX, j] = pred
        a[METRICS_LOSS_NDX, j] = loss
    return a


def _compute(rows) -> dict:
    """compute_metrics with every warning an error: a degenerate case must not warn."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        m = compute_metrics(_metrics_a(rows))
    assert set(m["metrics"]) == SCALAR_TAGS
    for tag, value in m["metrics"].items():
        assert type(value) is float and math.isfinite(value), (tag, value)
    return m


# label, probability, loss
MIXED = [
    (1.0, 0.9, 0.1),    # true positive
    (1.0, 0.7, 0.3),    # true positive
    (1.0, 0.5, 0.7),    # probability exactly 0.5: predicted negative -> false negative
    (1.0, 0.2, 1.5),    # false negative
    (0.0, 0.8, 1.2),    # false positive
    (0.0, 0.1, 0.2),    # true negative
    (0.0, 0.5, 0.6),    # probability exactly 0.5: predicted negative -> true negative
    (0.5, 0.3, 0.4),    # label exactly 0.5 counts as negative -> true negative
    (0.0, 0.0, 0.0),    # true negative
]
# By hand: 4 positives (2 right), 5 negatives (4 right), 1 false positive.
# precision = 2 / (2 + 1), recall = 2 / 4, F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7.


def test_mixed_counts_and_scalars():
    m = _compute(MIXED)
    assert (m["neg_correct"], m["neg_count"], m["pos_correct"], m["pos_count"]) == (4, 5, 2, 4)
    assert all(type(m[k]) is int
               for k in ("neg_correct", "neg_count", "pos_correct", "pos_count"))
    s = m["metrics"]
    expected = {
        "loss/all": 5.0 / 9,                          # (0.1+0.3+0.7+1.5+1.2+0.2+0.6+0.4+0) / 9
        "loss/neg": 2.4 / 5,                          # (1.2+0.2+0.6+0.4+0) / 5
        "loss/pos": 2.6 / 4,                          # (0.1+0.3+0.7+1.5) / 4
        "correct/all": 100.0 * 6 / 9,
        "correct/neg": 80.0,
        "correct/pos": 50.0,
        "pr/precision": 2.0 / 3,
        "pr/recall": 0.5,
        "pr/f1_score": 4.0 / 7,
    }
    for tag, value in expected.items():
        assert s[tag] == pytest.approx(value, rel=1e-6), tag


def test_probability_and_label_of_exactly_half_are_negative():
    # one sample each: 0.5 is the last negative value, the next float32 up is positive
    half = _compute([(1.0, 0.5, 1.0)])
    assert (half["pos_count"], half["pos_correct"]) == (1, 0)
    above = float(np.nextafter(np.float32(0.5), np.float32(1.0)))
    assert _compute([(1.0, above, 1.0)])["pos_correct"] == 1
    half = _compute([(0.5, 0.1, 1.0)])
    assert (half["neg_count"], half["neg_correct"], half["pos_count"]) == (1, 1, 0)
    assert _compute([(above, 0.1, 1.0)])["pos_count"] == 1


def test_book_log_lines():
    lines = format_metric_lines(3, "trn", _compute(MIXED))
    assert lines == [
        "E3 trn      0.5556 loss,  66.7% correct, 0.6667 precision, 0.5000 recall, "
        "0.5714 f1 score",
        "E3 trn_neg  0.4800 loss,  80.0% correct (4 of 5)",
        "E3 trn_pos  0.6500 loss,  50.0% correct (2 of 4)",
    ]


def test_book_log_lines_all_right_and_empty_class():
    lines = format_metric_lines(12, "val", _compute([(0.0, 0.25, 0.5), (0.0, 0.0, 0.25)]))
    assert lines == [
        "E12 val      0.3750 loss, 100.0% correct, 0.0000 precision, 0.0000 recall, "
        "0.0000 f1 score",
        "E12 val_neg  0.3750 loss, 100.0% correct (2 of 2)",
        "E12 val_pos  0.0000 loss,   0.0% correct (0 of 0)",
    ]


def test_no_positives():
    # two negatives, one of them predicted positive: no positive class at all
    m = _compute([(0.0, 0.9, 2.0), (0.0, 0.1, 1.0)])
    s = m["metrics"]
    assert (m["pos_count"], m["pos_correct"], m["neg_count"], m["neg_correct"]) == (0, 0, 2, 1)
    assert s["loss/pos"] == 0.0 and s["correct/pos"] == 0.0       # empty class
    assert s["pr/recall"] == 0.0                                  # no positives
    assert s["pr/precision"] == 0.0                               # 0 of 1 predicted positive
    assert s["pr/f1_score"] == 0.0                                # precision + recall == 0
    assert s["loss/neg"] == pytest.approx(1.5) and s["loss/all"] == pytest.approx(1.5)
    assert s["correct/neg"] == 50.0 and s["correct/all"] == 50.0


def test_no_negatives():
    m = _compute([(1.0, 0.9, 0.5), (1.0, 0.6, 1.5), (1.0, 0.5, 4.0)])
    s = m["metrics"]
    assert (m["neg_count"], m["neg_correct"], m["pos_count"], m["pos_correct"]) == (0, 0, 3, 2)
    assert s["loss/neg"] == 0.0 and s["correct/neg"] == 0.0       # empty class
    assert s["pr/precision"] == 1.0
    assert s["pr/recall"] == pytest.approx(2 / 3)
    assert s["pr/f1_score"] == pytest.approx(0.8)                 # 2 * (2/3) / (5/3)
    assert s["loss/pos"] == pytest.approx(2.0) and s["loss/all"] == pytest.approx(2.0)
    assert s["correct/pos"] == pytest.approx(200 / 3)


def test_nothing_predicted_positive():
    m = _compute([(1.0, 0.4, 1.0), (1.0, 0.5, 3.0), (0.0, 0.0, 2.0)])
    s = m["metrics"]
    assert (m["pos_count"], m["pos_correct"], m["neg_count"], m["neg_correct"]) == (2, 0, 1, 1)
    assert s["pr/precision"] == 0.0                               # nothing predicted positive
    assert s["pr/recall"] == 0.0                                  # 0 of 2 positives
    assert s["pr/f1_score"] == 0.0
    assert s["correct/pos"] == 0.0 and s["correct/neg"] == 100.0
    assert s["correct/all"] == pytest.approx(100 / 3)
    assert s["loss/pos"] == pytest.approx(2.0) and s["loss/neg"] == pytest.approx(2.0)


def test_all_predicted_positive_no_positives_precision_zero_not_nan():
    m = _compute([(0.0, 1.0, 1.0)])
    assert m["metrics"]["pr/precision"] == 0.0 and m["metrics"]["pr/f1_score"] == 0.0
    assert m["metrics"]["correct/all"] == 0.0


def test_empty_phase():
    m = _compute([])
    assert (m["neg_correct"], m["neg_count"], m["pos_correct"], m["pos_count"]) == (0, 0, 0, 0)
    assert all(v == 0.0 for v in m["metrics"].values())
    assert format_metric_lines(1, "val", m)[2] == "E1 val_pos  0.0000 loss,   0.0% correct (0 of 0)"
