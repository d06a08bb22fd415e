"""The book's ch. 14 pipeline on one CT (the core of ``luna-tui analyze``): segment the
slices (the box around the lungs, luna_core.data.lung_box, unless ``lungs=False``: then every
pixel of every slice, as the book), group the called pixels into candidates
(luna_core.data.seg_grouping), cut each candidate's 32×48×48 chunk at its centre, classify it
(nodule or not) and, given a malignancy model, grade the ones classified a nodule (the book's
table puts the rest in "filtered out" whatever their grade). The models come in as
``predict`` callables (numpy in, probabilities out), so the pipeline is the same for trained
models and for the models a test sets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from luna_core.data.ct import CHUNK_WIDTH_IRC, Ct, cut_chunk, window_starts
from luna_core.data.lung_box import LungBox, lung_box
from luna_core.data.seg_grouping import group_components, segment_volume
from luna_core.score.detection import THRESHOLD, Detection

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class SeriesAnalysis:
    series_uid: str
    detections: list[Detection]
    components: int                         # candidates the segmentation gave
    seconds: dict[str, float] = field(default_factory=dict)   # per stage
    segmented: float = 1.0                  # the share of the volume's voxels segmented


def lungs_of(ct: Ct) -> LungBox:
    """The box around the CT's lungs that the pipeline segments."""
    return lung_box(ct.hu_a, row_mm=ct.vx_size_xyz.y, col_mm=ct.vx_size_xyz.x)


def analyze_ct(ct: Ct, segment: Predict, classify: Predict, grade: Predict | None = None,
               batch_size: int = 16, lungs: bool = True) -> SeriesAnalysis:
    """``segment``: (N, 7, rows, cols) HU -> (N, 1, rows, cols) nodule-pixel probabilities;
    ``classify`` and ``grade``: (N, 1, 32, 48, 48) HU -> (N,) probability of a nodule / of a
    malignant one."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    shape = ct.hu_a.shape
    box = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    segmented = 1.0
    if lungs:
        found = lungs_of(ct)
        box, segmented = (found.index, found.row, found.col), found.share(shape)
        lap("lungs")
    probabilities = segment_volume(segment, ct.hu_a, batch_size, box)
    lap("segment")
    components = group_components(probabilities, ct.hu_a[box], offset=tuple(
        s.start for s in box))
    lap("group")
    if not components:
        return SeriesAnalysis(ct.series_uid, [], 0, seconds, segmented)
    irc = np.rint([c.center_irc for c in components]).astype(np.int64)
    chunks = np.stack([cut_chunk(ct.hu_a, window_starts(tuple(v), shape, CHUNK_WIDTH_IRC),
                                 CHUNK_WIDTH_IRC) for v in irc])[:, None].astype(np.float32)
    p_nodule = np.concatenate([np.asarray(classify(chunks[k:k + batch_size]), np.float64)
                               for k in range(0, len(chunks), batch_size)])
    lap("classify")
    p_mal: list[float | None] = [None] * len(chunks)
    if grade is not None:
        passed = np.flatnonzero(p_nodule >= THRESHOLD)
        for k in range(0, len(passed), batch_size):
            rows = passed[k:k + batch_size]
            for j, v in zip(rows, np.asarray(grade(chunks[rows]), np.float64), strict=True):
                p_mal[j] = float(v)
        lap("grade")
    detections = [Detection(ct.series_uid, tuple(float(v) for v in ct.irc2xyz(c.center_irc)),
                            float(p), None if m is None else float(m))
                  for c, p, m in zip(components, p_nodule, p_mal, strict=True)]
    return SeriesAnalysis(ct.series_uid, detections, len(components), seconds, segmented)
