"""Nodule masks for segmentation (the book's ch. 13), built from the annotations' centres.

The rule, per nodule (its centre voxel ``c`` in (index, row, col)):

- along index, then row, then column, a radius grows from 2 while the voxels at ``c - r``
  and ``c + r`` on that axis are both inside the volume and both denser than
  ``MASK_THRESHOLD_HU`` (−700); the radius is the first ``r`` where that fails;
- the box ``c ± r`` (each axis, clipped to the volume) is marked;
- the series' mask is the union of its nodules' boxes AND (HU > −700).

So a nodule's mask is the dense voxels of a box around it: a vessel that touches the nodule
stretches the box only along the axes where it touches at the centre's row or column, and a
nodule at the volume's edge stops growing there (the book's code let an index below 0 wrap
round to the far end of the volume; here the box stops at the edge). A nodule whose centre
voxel is not denser than −700 still gets its box, and so an empty mask when nothing in it is
dense (`luna-tui check` reports such series).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MASK_THRESHOLD_HU = -700
START_RADIUS = 2


def _radius(line: np.ndarray, c: int) -> int:
    """The radius along one axis through the centre (``line``: the HU along it)."""
    r = START_RADIUS
    n = len(line)
    while (c - r >= 0 and c + r < n
           and line[c - r] > MASK_THRESHOLD_HU and line[c + r] > MASK_THRESHOLD_HU):
        r += 1
    return r


def nodule_box(hu: np.ndarray, center_irc) -> tuple[slice, slice, slice]:
    """The box the rule grows round one nodule's centre voxel (clipped to the volume)."""
    ci, cr, cc = (int(v) for v in center_irc)
    radii = (_radius(hu[:, cr, cc], ci), _radius(hu[ci, :, cc], cr), _radius(hu[ci, cr, :], cc))
    return tuple(slice(max(0, c - r), min(n, c + r + 1))
                 for c, r, n in zip((ci, cr, cc), radii, hu.shape, strict=True))


def build_mask(hu: np.ndarray, centers_irc: Iterable) -> np.ndarray:
    """The series' mask (bool, the volume's shape) for the nodules at ``centers_irc``;
    centres outside the volume are left out."""
    boxes = np.zeros(hu.shape, dtype=bool)
    for center in centers_irc:
        if all(0 <= int(c) < n for c, n in zip(center, hu.shape, strict=True)):
            boxes[nodule_box(hu, center)] = True
    return boxes & (hu > MASK_THRESHOLD_HU)


def mask_voxels(hu: np.ndarray, centers_irc: Iterable) -> list[int]:
    """Each nodule's own mask in voxels (its box's voxels denser than −700 HU; 0 for a
    centre outside the volume): 0 is an empty mask."""
    out = []
    for center in centers_irc:
        inside = all(0 <= int(c) < n for c, n in zip(center, hu.shape, strict=True))
        out.append(int((hu[nodule_box(hu, center)] > MASK_THRESHOLD_HU).sum()) if inside else 0)
    return out
