"""From a segmentation to candidates (the book's ch. 14): threshold, one erosion, 3-D
components, HU-weighted centres; and every slice of a volume through a model whose output
the test sets."""

from __future__ import annotations

import numpy as np
import pytest

from luna_core.data.seg_grouping import context_stack, group_components, segment_volume


def test_two_blobs_give_two_candidates_at_their_hu_weighted_centres():
    hu = np.full((20, 30, 30), -1000, dtype=np.int16)
    p = np.zeros(hu.shape, dtype=np.float32)
    p[4:9, 5:10, 5:10] = 0.9                     # a 5x5x5 cube: erosion leaves 3x3x3
    hu[4:9, 5:10, 5:10] = 0
    hu[6, 6:9, 8] = 400                          # denser on one side: pulls the centre
    p[12:17, 18:24, 18:24] = 0.7                 # another, 5x6x6
    hu[12:17, 18:24, 18:24] = 40
    got = group_components(p, hu)
    assert len(got) == 2
    first, second = got
    assert first.voxels == 27 and second.voxels == 3 * 4 * 4
    w = np.clip(hu[5:8, 6:9, 6:9].astype(float), -1000, 1000) + 1001
    i, r, c = np.indices(w.shape)
    want = tuple(float((w * a).sum() / w.sum()) + o for a, o in ((i, 5), (r, 6), (c, 6)))
    assert first.center_irc == pytest.approx(want)
    assert first.center_irc[2] > 7.0                        # pulled towards the dense side
    assert second.center_irc == pytest.approx((14.0, 20.5, 20.5))


def test_erosion_removes_thin_streaks_and_faces_connect_corners_do_not():
    hu = np.zeros((10, 20, 20), dtype=np.int16)
    p = np.zeros(hu.shape, dtype=np.float32)
    p[5, 2:18, 2] = 0.9                                     # one voxel thick: eroded away
    assert group_components(p, hu) == []
    p[:] = 0
    p[1:4, 1:4, 1:4] = 0.9
    p[4:7, 4:7, 4:7] = 0.9                                  # touches the first at a corner
    assert len(group_components(p, hu, threshold=0.5)) == 2   # each erodes to its centre
    p[:] = 0.5                                              # not above 0.5: nothing
    assert group_components(p, hu) == []
    with pytest.raises(ValueError, match="differ"):
        group_components(p[:5], hu)


def test_every_slice_goes_through_the_model_with_its_context_clamped():
    hu = np.arange(6, dtype=np.int16)[:, None, None] * np.ones((6, 4, 8), dtype=np.int16)
    assert context_stack(hu, 0)[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3]
    assert context_stack(hu, 5)[:, 0, 0].tolist() == [2, 3, 4, 5, 5, 5, 5]
    seen = []

    def predict(batch):                       # the middle channel's HU / 10, as set here
        seen.append(batch.shape)
        return batch[:, 3:4] / 10.0

    out = segment_volume(predict, hu, batch_size=4)
    assert [s[0] for s in seen] == [4, 2] and seen[0][1:] == (7, 4, 8)
    assert out.shape == hu.shape and np.allclose(out[:, 0, 0], np.arange(6) / 10.0)
