"""The book's nodule mask (ch. 13) on volumes built here: a sphere, a nodule touching a
vessel, a nodule at the volume's edge, two nodules in one slice."""

from __future__ import annotations

import numpy as np

from luna_core.data.masks import MASK_THRESHOLD_HU, build_mask, mask_voxels, nodule_box

AIR = -1000
TISSUE = 40


def _lung(shape=(40, 64, 64)) -> np.ndarray:
    return np.full(shape, AIR, dtype=np.int16)


def _sphere(hu, center, radius, value=TISSUE):
    i, r, c = np.indices(hu.shape)
    ci, cr, cc = center
    hu[(i - ci) ** 2 + (r - cr) ** 2 + (c - cc) ** 2 <= radius ** 2] = value
    return hu


def test_a_sphere_is_masked_exactly():
    hu = _sphere(_lung(), (20, 30, 30), 5)
    mask = build_mask(hu, [(20, 30, 30)])
    assert np.array_equal(mask, hu > MASK_THRESHOLD_HU)       # the whole sphere, nothing else
    assert nodule_box(hu, (20, 30, 30)) == (slice(14, 27), slice(24, 37), slice(24, 37))
    assert mask.sum() == (hu == TISSUE).sum() > 400


def test_a_small_nodule_gets_the_starting_radius_and_only_its_dense_voxels():
    hu = _lung()
    hu[20, 30, 30] = TISSUE                                   # one voxel
    hu[20, 30, 33] = TISSUE                                   # 3 away: outside the box of 2
    box = nodule_box(hu, (20, 30, 30))
    assert box == (slice(18, 23), slice(28, 33), slice(28, 33))
    mask = build_mask(hu, [(20, 30, 30)])
    assert mask.sum() == 1 and mask[20, 30, 30]


def test_a_vessel_touching_the_nodule_stretches_the_box_along_its_axis_only():
    hu = _sphere(_lung(), (20, 30, 30), 4)
    hu[20, 30, 34:50] = TISSUE           # a vessel through the nodule along the column axis,
    hu[20, 30, 0:26] = TISSUE            # longer on one side than on the other
    hu[20, 20:24, 30] = TISSUE           # a vessel on one side only along the row axis
    box = nodule_box(hu, (20, 30, 30))
    assert box[2] == slice(10, 51)       # grown until the shorter side's end (col 50) fails
    assert box[1] == slice(25, 36)       # one-sided vessel: stops at the sphere's edge + 1
    assert box[0] == slice(15, 26)
    mask = build_mask(hu, [(20, 30, 30)])
    assert mask[20, 30, 10:50].all() and not mask[20, 30, 50:].any()
    assert not mask[20, 30, :10].any()            # the longer side, past the box: left out
    assert not mask[20, 20:24, 30].any()          # the one-sided vessel is outside the box
    assert mask.sum() == ((hu > MASK_THRESHOLD_HU)[box]).sum()


def test_a_nodule_at_the_volume_edge_stops_there_and_does_not_wrap():
    hu = _sphere(_lung(), (1, 30, 30), 4)         # cut by the volume's first slice
    hu[-3:, 28:33, 28:33] = TISSUE                # dense at the far end: must stay unmasked
    box = nodule_box(hu, (1, 30, 30))
    assert box[0] == slice(0, 4)                  # r = 2 (1 - 2 < 0 stops it), clipped at 0
    mask = build_mask(hu, [(1, 30, 30)])
    assert mask[0:4, 30, 30].all() and not mask[-3:].any()
    corner = _sphere(_lung(), (39, 63, 63), 3)
    assert build_mask(corner, [(39, 63, 63)])[38:, 62:, 62:].all()


def test_two_nodules_in_one_slice_each_get_their_own_box_and_a_centre_outside_is_skipped():
    hu = _sphere(_sphere(_lung(), (20, 15, 15), 3), (20, 45, 45), 5)
    mask = build_mask(hu, [(20, 15, 15), (20, 45, 45), (99, 0, 0)])
    assert np.array_equal(mask, hu > MASK_THRESHOLD_HU)
    assert mask[20, 15, 15] and mask[20, 45, 45] and not mask[20, 30, 30]
    one = build_mask(hu, [(20, 15, 15)])
    assert one.sum() == (hu[:, :32, :32] > MASK_THRESHOLD_HU).sum()


def test_a_centre_in_air_gives_an_empty_mask():
    hu = _lung()
    hu[20, 40, 40] = TISSUE
    assert not build_mask(hu, [(20, 30, 30)]).any()


def test_mask_voxels_counts_each_nodules_own_mask():
    hu = _sphere(_sphere(_lung(), (20, 15, 15), 3), (20, 45, 45), 5)
    counts = mask_voxels(hu, [(20, 15, 15), (20, 45, 45), (20, 30, 30), (99, 0, 0)])
    assert counts[0] == (hu[:, :32, :32] > MASK_THRESHOLD_HU).sum()
    assert counts[1] == (hu[:, 32:, 32:] > MASK_THRESHOLD_HU).sum()
    assert counts[2:] == [0, 0]                       # in air; outside the volume
