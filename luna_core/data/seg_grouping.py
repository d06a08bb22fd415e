"""From a segmentation of a whole CT to candidates (the book's ch. 14, ``luna-tui analyze``):
the U-Net's output per slice, called nodule above 0.5, eroded once (a thin streak of pixels,
a vessel's edge, goes), grouped into connected components in 3-D (faces touching: 6-connected,
``scipy.ndimage.label``'s default), and each component's centre taken as the centre of mass of
its HU (+1001, so air weighs little but never nothing). ``segment_volume`` runs a model over
every slice of a volume in batches, each slice with its 3 context slices each side as in
training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .ct import HU_MAX, HU_MIN
from .segstore import CONTEXT_SLICES

THRESHOLD = 0.5


@dataclass(frozen=True)
class Component:
    center_irc: tuple[float, float, float]     # the HU-weighted centre of mass
    voxels: int                                # after erosion


def group_components(probabilities: np.ndarray, hu: np.ndarray,
                     threshold: float = THRESHOLD, offset: tuple[int, int, int] = (0, 0, 0)
                     ) -> list[Component]:
    """The candidates of one volume's segmentation (``probabilities`` and ``hu`` (index, row,
    col) of one shape), ordered by centre; ``offset``: where these arrays start in the
    volume (a box of it: the centres are the volume's)."""
    if probabilities.shape != hu.shape:
        raise ValueError(f"segmentation {probabilities.shape} and CT {hu.shape} differ")
    called = probabilities > threshold
    clean = ndimage.binary_erosion(called, iterations=1)
    labels, count = ndimage.label(clean)
    if not count:
        return []
    index = np.arange(1, count + 1)
    weight = np.clip(hu, HU_MIN, HU_MAX).astype(np.float64) + 1001.0
    centres = ndimage.center_of_mass(weight, labels=labels, index=index)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    out = [Component(tuple(float(v) + o for v, o in zip(c, offset, strict=True)), int(n))
           for c, n in zip(centres, sizes, strict=True)]
    return sorted(out, key=lambda comp: comp.center_irc)


def context_stack(hu: np.ndarray, k: int) -> np.ndarray:
    """Slice ``k`` with its context: (7, rows, cols), the index clamped at the ends."""
    n = hu.shape[0]
    rows = np.clip(np.arange(k - CONTEXT_SLICES, k + CONTEXT_SLICES + 1), 0, n - 1)
    return hu[rows]


def segment_volume(predict: Callable[[np.ndarray], np.ndarray], hu: np.ndarray,
                   batch_size: int = 16, box: tuple[slice, slice, slice] | None = None
                   ) -> np.ndarray:
    """Every slice of ``hu`` through ``predict`` ((N, 7, rows, cols) HU -> (N, 1, rows,
    cols) probabilities), ``batch_size`` slices at a time: (index, row, col) float32. With a
    ``box`` (index, row, col slices), only the box is segmented (its slices keep their true
    context slices) and the result is the box's."""
    index, rows, cols = box if box is not None else (slice(0, hu.shape[0]), slice(None),
                                                      slice(None))
    ks_all = range(*index.indices(hu.shape[0]))
    out = np.zeros((len(ks_all), *hu[0, rows, cols].shape), dtype=np.float32)
    for start in range(0, len(ks_all), batch_size):
        ks = ks_all[start:start + batch_size]
        batch = np.stack([context_stack(hu, k)[:, rows, cols] for k in ks]).astype(np.float32)
        out[start:start + len(ks)] = np.asarray(predict(batch))[:, 0]
    return out
