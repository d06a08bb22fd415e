"""One synthetic series: its volume painted from anatomy and findings, and its candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from luna_core.data.synth.anatomy import blend, make_anatomy, paint_segment, vessel_tree
from luna_core.data.synth.dataset_spec import HU_MAX, HU_MIN, POSITIVE_JITTER_MM
from luna_core.data.synth.decoys import (
    END_ON_VESSEL,
    PLEURAL_BUMP,
    decoy_counts,
    end_on_vessels,
    paint_bumps,
    place_decoys,
    pleura,
)
from luna_core.data.synth.findings import Nodule, Site, paint_nodule, place_nodules
from luna_core.data.synth.series_geometry import Geometry


@dataclass
class Series:
    geometry: Geometry
    volume: np.ndarray                 # int16 (index, row, col) as stored
    nodules: list[Nodule]
    candidates: list[tuple[np.ndarray, int]]    # (xyz, class)
    annotations: list[tuple[np.ndarray, float]]  # (xyz, diameter_mm)
    kinds: list[str]                            # each candidate's kind (findings, decoys)


def paint_findings(rng: np.random.Generator, mean: np.ndarray, sig: np.ndarray, anat, lung,
                   geom: Geometry, nodule_count: int, negatives: int):
    """The lung's contents painted into ``mean``/``sig``: the vessel tree and the end-on
    vessels, the nodules, the pleural bumps; returns the nodules and the decoys' centres
    (generation-frame cri) and kinds."""
    nz, ny, nx = mean.shape
    spacing = np.array(geom.spacing)
    segments, junctions = vessel_tree(rng, anat, geom.size, spacing)
    end_on = end_on_vessels(rng, decoy_counts(negatives)[END_ON_VESSEL], lung, spacing)
    vessel = np.zeros((nz, ny, nx), dtype=np.float32)
    for p0, p1, r0, r1 in segments + end_on:
        paint_segment(vessel, spacing, p0, p1, r0, r1)
    blend(mean, sig, vessel * lung, np.float32(40.0), 20.0)

    # Nodules: isolated (clear of vessels), against a vessel, or against the wall.
    wall_mm, inward = pleura(lung, spacing, rng)
    site = Site(lung >= 0.999, vessel < 0.02, spacing, segments, wall_mm, inward)
    nodules = place_nodules(rng, nodule_count, site)
    for n in nodules:
        paint_nodule(mean, sig, n, spacing)
    bumps = paint_bumps(rng, mean, sig, site, decoy_counts(negatives)[PLEURAL_BUMP], nodules)
    neg_cri, neg_kinds = place_decoys(rng, negatives, site, lung, vessel, junctions, end_on,
                                      bumps, nodules)
    return nodules, neg_cri, neg_kinds


def make_series(rng: np.random.Generator, geom: Geometry, nodule_count: int,
                negatives: int) -> Series:
    nx, ny, nz = geom.size
    spacing = np.array(geom.spacing)
    anat = make_anatomy(rng, nx, nz)

    col = np.arange(nx, dtype=np.float32)[None, None, :]
    row = np.arange(ny, dtype=np.float32)[None, :, None]
    t = (np.arange(nz, dtype=np.float32) / max(nz - 1, 1))[:, None, None]
    u2 = ((col[0] - anat.cx) / anat.half)                 # (1, X)
    v2 = ((row[0] - anat.cy) / anat.half)                 # (Y, 1)
    rho = np.sqrt((u2 / anat.body_a) ** 2 + (v2 / anat.body_b) ** 2)   # (Y, X)
    ramp = anat.half * 0.8                                # normalised units -> ~voxels

    mean = np.full((nz, ny, nx), -1000.0, dtype=np.float32)
    sig = np.full((nz, ny, nx), 12.0, dtype=np.float32)
    body = np.clip((1.0 - rho) * ramp + 0.5, 0.0, 1.0).astype(np.float32)
    blend(mean, sig, body[None], np.float32(40.0), 18.0)
    fat = body * np.clip((rho - 0.93) * ramp + 0.5, 0.0, 1.0).astype(np.float32)
    blend(mean, sig, fat[None], np.float32(-90.0), 18.0)

    # Ribs: a ring just under the fat, cut into slanted bands along z.
    ring = np.clip((0.035 - np.abs(rho - 0.875)) * ramp + 0.5, 0.0, 1.0).astype(np.float32)
    theta = np.arctan2(v2, u2).astype(np.float32)
    z_mm = (np.arange(nz, dtype=np.float32) * np.float32(spacing[2]))[:, None, None]
    band = np.sin(np.float32(2 * np.pi / anat.rib_period_mm) * z_mm
                  + np.float32(anat.rib_slant) * theta[None] + np.float32(anat.rib_phase))
    ribs = ring[None] * np.clip((band - np.float32(0.35)) * 4.0, 0.0, 1.0)
    blend(mean, sig, ribs, np.float32(650.0), 60.0)
    # A vertebral body: cortical shell round cancellous bone.
    r_sp = np.sqrt(u2 ** 2 + (v2 - 0.53 * anat.body_b / 0.72) ** 2)
    spine = np.clip((0.11 - r_sp) * anat.half + 0.5, 0.0, 1.0).astype(np.float32)
    blend(mean, sig, spine[None], np.float32(800.0), 60.0)
    marrow = np.clip((0.08 - r_sp) * anat.half + 0.5, 0.0, 1.0).astype(np.float32)
    blend(mean, sig, marrow[None], np.float32(450.0), 50.0)
    # The trachea, an air tube between the lungs near the top.
    trachea2 = np.clip((0.05 - np.sqrt(u2 ** 2 + (v2 + 0.12) ** 2)) * anat.half + 0.5, 0, 1)
    trachea = trachea2.astype(np.float32)[None] * (t > 0.62).astype(np.float32)
    blend(mean, sig, trachea, np.float32(-1000.0), 12.0)

    lung = anat.lung_alpha(col, row, t)
    lung_hu = np.float32(-865.0) + np.float32(45.0) * np.broadcast_to(v2[None], lung.shape)
    blend(mean, sig, lung, lung_hu, 35.0)

    nodules, neg_cri, neg_kinds = paint_findings(rng, mean, sig, anat, lung, geom,
                                                 nodule_count, negatives)

    noise = rng.standard_normal((nz, ny, nx), dtype=np.float32)
    mean += noise * sig
    np.rint(mean, out=mean)
    np.clip(mean, HU_MIN, HU_MAX, out=mean)
    volume = mean.astype("<i2")
    if geom.flipped:
        volume = np.ascontiguousarray(volume[:, ::-1, ::-1])

    candidates: list[tuple[np.ndarray, int]] = []
    annotations: list[tuple[np.ndarray, float]] = []
    for n in nodules:
        centre = geom.cri_to_xyz(geom.id_cri_to_cri(n.cri.astype(np.float64)))
        jitter = rng.normal(size=3)
        jitter *= rng.uniform(0.0, POSITIVE_JITTER_MM) / np.linalg.norm(jitter)
        annotations.append((centre, n.diameter_mm))
        candidates.append((centre + jitter, 1))
    for cri in neg_cri:
        candidates.append((geom.cri_to_xyz(geom.id_cri_to_cri(cri)), 0))
    order = rng.permutation(len(candidates))
    candidates = [candidates[i] for i in order]
    kinds = [n.kind for n in nodules] + neg_kinds
    return Series(geom, volume, nodules, candidates, annotations, [kinds[i] for i in order])


def make_missing_series(rng: np.random.Generator, uid: str, nodules: int,
                        negatives: int) -> tuple[list, list]:
    """Rows for a series that is listed but never written: plausible world positions."""
    centre = np.array([rng.uniform(-20, 20), rng.uniform(-15, 25), rng.uniform(-300, -100)])
    candidates, annotations = [], []
    for _ in range(nodules):
        xyz = centre + rng.uniform(-35, 35, size=3)
        annotations.append((xyz, round(float(rng.uniform(5.0, 15.0)), 3)))
        candidates.append((xyz + rng.uniform(-0.3, 0.3, size=3), 1))
    for _ in range(negatives):
        candidates.append((centre + rng.uniform(-45, 45, size=3), 0))
    order = rng.permutation(len(candidates))
    return [candidates[i] for i in order], annotations


def nodule_counts(rng: np.random.Generator, series: int, lo: int, hi: int) -> list[int]:
    """Per-series nodule counts in [lo, hi] whose total is exactly series * (lo + hi) / 2
    (rounded), so a small set does not end up with no positives by bad luck."""
    total = round(series * (lo + hi) / 2)
    counts = [lo] * series
    extra = total - lo * series
    while extra > 0:
        room = [i for i, c in enumerate(counts) if c < hi]
        counts[room[int(rng.integers(0, len(room)))]] += 1
        extra -= 1
    return counts
