"""The box around the lungs that `analyze` segments: the air inside the body, not the air
around it, with its margin; a volume with no lungs inside a body keeps its whole extent."""

from __future__ import annotations

import numpy as np

from luna_core.data.lung_box import ALIGN, MARGIN_SLICES, lung_box
from luna_core.data.seg_grouping import segment_volume


def _chest(n=40, size=128) -> np.ndarray:
    """Air (-1000) around an elliptical body (40 HU) holding two lungs (-850) over slices
    10-29, rows 40-79, cols 20-49 and 78-107; a pocket of air in the bed below the body."""
    hu = np.full((n, size, size), -1000, dtype=np.int16)
    _i, r, c = np.indices(hu.shape)
    hu[((r - 60) / 50.0) ** 2 + ((c - 64) / 60.0) ** 2 <= 1] = 40
    hu[10:30, 40:80, 20:50] = -850
    hu[10:30, 40:80, 78:108] = -850
    hu[:, 116:124, :] = 200                       # the bed: a plate with a small air pocket
    hu[18:20, 119:121, 60:64] = -1000
    return hu


def test_the_box_holds_the_lungs_with_a_margin_and_not_the_air_around():
    hu = _chest()
    box = lung_box(hu, row_mm=1.0, col_mm=1.0)
    assert not box.whole
    assert (box.index.start, box.index.stop) == (10 - MARGIN_SLICES, 30 + MARGIN_SLICES)
    assert box.row.start <= 40 - 10 and box.row.stop >= 80 + 10        # 10 mm each side
    assert box.col.start <= 20 - 10 and box.col.stop >= 108 + 10
    assert box.row.start >= 40 - 20 and box.row.stop <= 80 + 20         # not the image
    assert box.row.stop <= 116                    # the bed's pocket did not stretch it
    for s in (box.row, box.col):
        assert (s.stop - s.start) % ALIGN == 0
    assert 0.2 < box.share(hu.shape) < 0.6


def test_no_body_around_the_air_is_the_whole_volume():
    hu = np.full((20, 64, 64), -850, dtype=np.int16)     # all "lung", touching every edge
    box = lung_box(hu)
    assert box.whole and box.share(hu.shape) == 1.0


def test_only_the_box_is_segmented_and_its_slices_keep_their_context():
    hu = _chest()
    box = lung_box(hu)
    hu[:, 64, 64] = np.arange(len(hu)) - 900             # each slice says its index here
    seen = []

    def predict(batch):
        seen.append(batch.copy())
        return (batch[:, 3:4] > -900).astype(np.float32)

    out = segment_volume(predict, hu, 8, (box.index, box.row, box.col))
    stacks = np.concatenate(seen)
    assert stacks.shape == (box.index.stop - box.index.start, 7, box.row.stop - box.row.start,
                            box.col.stop - box.col.start)
    marks = stacks[:, :, 64 - box.row.start, 64 - box.col.start] + 900
    first = box.index.start                              # true neighbours, not clamped
    assert marks[0].tolist() == list(range(first - 3, first + 4))
    np.testing.assert_array_equal(out, hu[box.index, box.row, box.col] > -900)


def test_grouping_the_box_gives_the_volumes_centres():
    from luna_core.data.seg_grouping import group_components

    hu = _chest()
    box = lung_box(hu)
    p = np.zeros(hu.shape, np.float32)
    p[14:19, 50:56, 30:36] = 0.9                    # two blobs in the lungs
    p[20:24, 60:64, 90:95] = 0.9
    whole = group_components(p, hu)
    cut = (box.index, box.row, box.col)
    boxed = group_components(p[cut], hu[cut], offset=(box.index.start, box.row.start,
                                                      box.col.start))
    assert len(whole) == 2 and boxed == whole
