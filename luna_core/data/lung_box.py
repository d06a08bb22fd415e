"""Where in a CT the lungs are, so ``luna-tui analyze`` segments only that box (the book's
ch. 14 segments every pixel of every slice; LUNA16's nodules all lie in the lungs).

The lungs are the air inside the body: voxels below −400 HU that are not connected, within
their slice's plane, to the edge of the image (the air around the patient touches the edge;
the lungs, the trachea and the bowel's gas do not), kept in 3-D pieces at least a tenth of
the largest (a pocket of air in the bed or the bowel does not stretch the box). Found on
every 4th row and column (a box needs no finer grid); the box is the lung voxels' extent
plus a margin (``MARGIN_MM`` in the plane, ``MARGIN_SLICES`` along the
index), rounded out so its rows and columns divide by ``ALIGN`` (the U-Net pools twice). A
volume whose "lungs" are under ``MIN_LUNG_SHARE`` of it (a field of view that cuts the lung
open to the edge, a phantom) keeps its whole extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

AIR_HU = -400.0
STEP = 4                      # rows and columns sampled to find the box
MARGIN_MM = 10.0
MARGIN_SLICES = 4
ALIGN = 4
MIN_LUNG_SHARE = 0.005
LARGEST_SHARE = 0.1


@dataclass(frozen=True)
class LungBox:
    index: slice
    row: slice
    col: slice
    whole: bool               # True: no lungs found, the whole volume

    def share(self, shape: tuple[int, int, int]) -> float:
        """The box's voxels as a share of the volume's."""
        sizes = [s.stop - s.start for s in (self.index, self.row, self.col)]
        return float(np.prod(sizes)) / float(np.prod(shape))


def lung_box(hu: np.ndarray, row_mm: float = 1.0, col_mm: float = 1.0) -> LungBox:
    """The box of ``hu`` (index, row, col) to segment; ``row_mm``/``col_mm``: the voxel's
    size in the plane (for the margin)."""
    n, rows, cols = hu.shape
    whole = LungBox(slice(0, n), slice(0, rows), slice(0, cols), True)
    air = hu[:, ::STEP, ::STEP] < AIR_HU
    labels, count = ndimage.label(air, structure=_in_plane())
    if not count:
        return whole
    edge = np.ones(count + 1, dtype=bool)             # label 0 (not air) is never inside
    edge[1:] = False
    for face in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        edge[np.unique(face)] = True
    inside = ~edge[labels]
    # the lungs (with the trachea) are the largest such air; small pockets (in the bed, the
    # bowel) that are under a tenth of it do not stretch the box
    pockets, found = ndimage.label(inside)
    if not found:
        return whole
    sizes = np.bincount(pockets.ravel())[1:]
    keep = np.concatenate([[False], sizes >= LARGEST_SHARE * sizes.max()])
    inside = keep[pockets]
    if inside.sum() < MIN_LUNG_SHARE * air.size:
        return whole
    ks, rs, cs = (np.flatnonzero(inside.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    margin_r = int(np.ceil(MARGIN_MM / max(row_mm, 1e-3))) + STEP
    margin_c = int(np.ceil(MARGIN_MM / max(col_mm, 1e-3))) + STEP
    return LungBox(
        slice(max(0, int(ks[0]) - MARGIN_SLICES), min(n, int(ks[-1]) + MARGIN_SLICES + 1)),
        _aligned(int(rs[0]) * STEP - margin_r, int(rs[-1]) * STEP + margin_r, rows),
        _aligned(int(cs[0]) * STEP - margin_c, int(cs[-1]) * STEP + margin_c, cols),
        False)


def _in_plane() -> np.ndarray:
    """Faces touching within a slice, nothing across slices: each slice labelled alone."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return structure


def _aligned(start: int, last: int, size: int) -> slice:
    """[start, last] clipped to the image and grown to a multiple of ALIGN where it fits."""
    start, stop = max(0, start), min(size, last + 1)
    extra = (-(stop - start)) % ALIGN
    grow_end = min(extra, size - stop)
    stop += grow_end
    start = max(0, start - (extra - grow_end))
    return slice(start, stop)
