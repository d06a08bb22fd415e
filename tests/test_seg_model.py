"""The segmentation model, loss and pixel numbers (the book's ch. 13), by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from luna_core.train.seg_metrics import (
    METRICS_FN_NDX,
    METRICS_FP_NDX,
    METRICS_LOSS_NDX,
    METRICS_TP_NDX,
    compute_seg_metrics,
    dice_loss,
    format_seg_lines,
    pixel_counts,
    seg_loss,
)
from luna_core.train.unet import SegModel


def test_the_model_has_the_books_size_and_keeps_the_slice_shape():
    torch.manual_seed(0)
    model = SegModel()
    assert sum(p.numel() for p in model.parameters()) == 118_271
    model.eval()
    with torch.no_grad():
        for h, w in ((64, 64), (160, 96)):
            out = model(torch.randn(2, 7, h, w) * 500)
            assert out.shape == (2, 1, h, w)
            assert float(out.min()) >= 0 and float(out.max()) <= 1


def _slices():
    """Two 4x4 slices: the first has 4 label pixels, 3 called (plus 1 false positive); the
    second no label and 2 false positives."""
    label = torch.zeros(2, 1, 4, 4)
    label[0, 0, :2, :2] = 1
    pred = torch.zeros(2, 1, 4, 4)
    pred[0, 0, 0, 0] = pred[0, 0, 0, 1] = pred[0, 0, 1, 0] = 0.9
    pred[0, 0, 1, 1] = 0.4                 # below 0.5: a miss
    pred[0, 0, 3, 3] = 0.8                 # a false positive
    pred[1, 0, 2, 2] = pred[1, 0, 2, 3] = 0.7
    return pred, label


def test_the_dice_loss_and_the_false_negative_term_by_hand():
    pred, label = _slices()
    d = dice_loss(pred, label)
    # slice 0: correct 0.9*3 + 0.4 = 3.1, prediction 3.9, label 4: 1 - (6.2 + 1)/(7.9 + 1)
    assert float(d[0]) == pytest.approx(1 - 7.2 / 8.9)
    assert float(d[1]) == pytest.approx(1 - 1 / (1.4 + 1))    # no label: only its FP
    fn = dice_loss(pred * label, label)
    # on the label's pixels: correct 3.1, prediction 3.1, label 4
    assert float(fn[0]) == pytest.approx(1 - 7.2 / 8.1)
    assert torch.allclose(seg_loss(pred, label), d + 8 * fn)
    perfect = label.clone()
    assert float(seg_loss(perfect, label)[0]) == pytest.approx(0.0)


def test_pixel_counts_and_a_phases_numbers_by_hand():
    pred, label = _slices()
    counts = pixel_counts(pred, label)
    assert counts.tolist() == [[3, 0], [1, 0], [1, 2]]           # TP, FN, FP per slice
    m = np.zeros((4, 2))
    m[METRICS_LOSS_NDX] = [0.5, 0.25]
    m[[METRICS_TP_NDX, METRICS_FN_NDX, METRICS_FP_NDX]] = counts.numpy()
    r = compute_seg_metrics(m)
    got = r["metrics"]
    assert got["loss/all"] == pytest.approx(0.375)
    assert got["percent_all/tp"] == pytest.approx(75.0)
    assert got["percent_all/fn"] == pytest.approx(25.0)
    assert got["percent_all/fp"] == pytest.approx(75.0)        # 3 FP over 4 label pixels
    assert got["pr/precision"] == pytest.approx(0.5)           # 3 / (3 + 3)
    assert got["pr/recall"] == pytest.approx(0.75)
    assert got["pr/f1_score"] == pytest.approx(0.6)
    assert got["seg/dice"] == pytest.approx((6 / 8 + 0.0) / 2)   # slice 2: 0 / (0 + 2)
    assert (r["pos_correct"], r["pos_count"]) == (3, 4)
    lines = format_seg_lines(2, "val", r)
    assert lines[0].startswith("E2 val") and "0.7500 recall" in lines[0]
    assert "75.0% fn" not in lines[1] and "25.0% fn" in lines[1] and "3 of 4 label" in lines[1]
    empty = compute_seg_metrics(np.zeros((4, 1)))["metrics"]
    assert empty["seg/dice"] == 1.0 and empty["pr/recall"] == 0.0 and empty["percent_all/fp"] == 0


def test_seg_examples_are_the_worst_slices_of_distinct_places():
    from luna_core.tasks.seg_examples import pick

    m = np.zeros((4, 8))
    m[METRICS_FN_NDX] = [50, 40, 0, 45, 10, 30, 30, 5]
    m[METRICS_FP_NDX] = [0, 0, 7, 0, 0, 0, 0, 9]
    assert pick(m, 3) == {"missed_pixels": [0, 3, 1], "false_pixels": [7, 2]}
    # columns 0, 1, 3 are slices 10, 12, 11 of series "a": one place, its worst taken
    places = {0: ("a", 10), 1: ("a", 12), 3: ("a", 11), 4: ("a", 30), 5: ("b", 10),
              6: ("b", 13), 2: ("c", 1), 7: ("c", 3)}
    assert pick(m, 3, places.get) == {"missed_pixels": [0, 5, 4], "false_pixels": [7]}
