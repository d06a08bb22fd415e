"""The ch. 14 pipeline on one CT with models the test sets: segment -> group -> classify ->
grade, and its detections scored as the challenge does (misses counted) and in the book's
table."""

from __future__ import annotations

import numpy as np
import pytest

from luna_core.data.ct import Ct
from luna_core.score.detection import book_table, detection_froc
from luna_core.score.froc import Findings
from luna_core.score.pipeline import analyze_ct


def _ct() -> Ct:
    """Lung (-850 HU) with three dense spheres: two nodules (r 4 at irc (10, 20, 20), r 3 at
    (20, 40, 40)) and a third blob (r 3 at (10, 45, 12)) that is not one; 1 mm voxels."""
    hu = np.full((32, 64, 64), -850, dtype=np.int16)
    i, r, c = np.indices(hu.shape)
    for (ci, cr, cc), rad in (((10, 20, 20), 4), ((20, 40, 40), 3), ((10, 45, 12), 3)):
        hu[(i - ci) ** 2 + (r - cr) ** 2 + (c - cc) ** 2 <= rad ** 2] = 40
    return Ct(hu, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3), "1.2.3")


def segment(batch):                      # every dense pixel of the middle slice
    return (batch[:, 3:4] > -500).astype(np.float32)


def classify(chunks):                    # a nodule when the chunk holds dense tissue
    return np.array([0.9 if c.max() > -500 else 0.1 for c in chunks])


def test_the_pipeline_finds_the_blobs_and_the_scores_count_them():
    ct = _ct()
    calls = []

    def grade(chunks):
        calls.append(len(chunks))
        return np.linspace(0.2, 0.8, len(chunks))

    result = analyze_ct(ct, segment, classify, grade, batch_size=2)
    assert result.components == 3 and calls == [2, 1]
    assert [d.probability for d in result.detections] == [0.9, 0.9, 0.9]   # all dense
    xyz = sorted(d.center_xyz for d in result.detections)
    assert xyz[0] == pytest.approx((12.0, 45.0, 10.0), abs=0.01)      # x=col, y=row, z=index
    assert xyz[1] == pytest.approx((20.0, 20.0, 10.0), abs=0.01)
    assert xyz[2] == pytest.approx((40.0, 40.0, 20.0), abs=0.01)
    assert set(result.seconds) == {"lungs", "segment", "group", "classify", "grade"}
    # the nodules: the two spheres, 8 and 6 mm; one more that nothing segments (a miss)
    findings = Findings({"1.2.3": [(20.0, 20.0, 10.0, 8.0), (40.0, 40.0, 20.0, 6.0),
                                   (55.0, 10.0, 28.0, 6.0)]})
    froc = detection_froc(result.detections, findings, ["1.2.3"], bootstrap=0)
    assert froc.nodules == 3 and froc.nodules_without_candidate == 1
    assert max(froc.sensitivity) <= 2 / 3 + 1e-9
    table = book_table(result.detections, {"1.2.3": findings.nodules["1.2.3"]},
                       {"1.2.3": [True, False, False]})
    assert table.sum(axis=1)[1:].tolist() == [2, 1]            # benign 2, malignant 1
    assert table[1, 0] == 1                                   # the unsegmented one


def test_nothing_segmented_is_no_detection():
    result = analyze_ct(_ct(), lambda b: np.zeros((len(b), 1, *b.shape[2:]), np.float32),
                        classify)
    assert result.detections == [] and result.components == 0
    assert set(result.seconds) == {"lungs", "segment", "group"}


def test_only_what_the_classifier_passes_is_graded():
    graded = []

    def grade(chunks):
        graded.append(len(chunks))
        return np.full(len(chunks), 0.7)

    def first_only(chunks):               # the first candidate a nodule, the others not
        return np.array([0.9] + [0.2] * (len(chunks) - 1))

    result = analyze_ct(_ct(), segment, first_only, grade, batch_size=8)
    assert graded == [1]
    assert [d.malignancy for d in result.detections] == [0.7, None, None]
