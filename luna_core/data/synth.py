"""A deterministic, LUNA16-format demo data set that a 3D CNN can learn from.

``write_synthetic_dataset`` writes the real release layout, so the reader that loads real
LUNA16 loads this unchanged::

    out_dir/subset0/<seriesuid>.mhd + .raw   (MetaImage, int16 HU, little-endian)
    ...
    out_dir/candidates.csv                   seriesuid,coordX,coordY,coordZ,class
    out_dir/annotations.csv                  seriesuid,coordX,coordY,coordZ,diameter_mm
    out_dir/synth.json                       what was generated (geometry, nodules, files)

Each Ct is a small chest: air outside an elliptical body (soft tissue, a fat layer), ribs and
a vertebra (bone), two lungs (about -850 HU) with branching vessels (tubes of +40 HU, radius
1-3 voxels) and a few spherical nodules (+20..+100 HU, 4-20 mm across, so anisotropic in
voxels). Geometry is anisotropic (in-plane 0.6-0.9 mm, slices 1.25-2.5 mm), origins are
non-zero and every ``flip_every``-th series has x and y flipped in its direction matrix, as
about 14 real scans do. Coordinates in the CSVs are world millimetres:
``xyz = D @ (cri * spacing) + origin`` with cri = (col, row, index).

Candidates: class 1 at each nodule centre (jittered by at most 0.6 mm) with an annotation row
of its diameter; class 0 in lung parenchyma and on vessels, about half each, so the task is
"blob versus tube" -- learnable but not trivial. With the defaults about 1 in 275 candidates
is positive (real LUNA16: 1 in 408). One extra series (``missing_series``) is listed in both
CSVs but not written, as when a user downloads only some subsets.

Everything derives from ``seed`` through numpy Generators: the same seed gives byte-identical
files. Volumes go to disk first (each through a temporary folder and ``os.replace``) and the
CSVs last, through temporary names, so an interrupted run never leaves a complete-looking
candidates.csv. This module uses numpy and SimpleITK only (no torch, no textual).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from luna_core.fsutil import atomic_write

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIPPED_XY_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
CANDIDATES_CSV = "candidates.csv"
ANNOTATIONS_CSV = "annotations.csv"
MANIFEST_JSON = "synth.json"
CANDIDATES_HEADER = "seriesuid,coordX,coordY,coordZ,class"
ANNOTATIONS_HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm"
MANIFEST_FORMAT = 1

_PARTIAL_DIR = ".synth-partial"
_SLICE_SPACINGS_MM = (1.25, 1.5, 1.8, 2.0, 2.5)
_NODULE_DIAMETER_MM = (4.0, 20.0)
_POSITIVE_JITTER_MM = 0.6
_HU_MIN, _HU_MAX = -1024, 3071


@dataclass
class SynthSummary:
    """What ``write_synthetic_dataset`` wrote."""

    out_dir: str
    series: int                 # series written to disk
    candidates: int             # rows of candidates.csv (missing series included)
    positives: int              # class-1 rows of candidates.csv
    annotations: int            # rows of annotations.csv
    seconds: float
    missing_series: int = 0     # series listed in the CSVs but not on disk
    flipped_series: int = 0     # series written with direction (-1,0,0, 0,-1,0, 0,0,1)
    bytes_on_disk: int = 0
    seed: int = 0
    series_uids: list[str] = field(default_factory=list)    # on disk, in generation order
    missing_uids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        ratio = self.candidates / self.positives if self.positives else float("inf")
        return (f"{self.series} series ({self.flipped_series} flipped, {self.missing_series} "
                f"listed but not written), {self.candidates} candidates, {self.positives} "
                f"positive (1 in {ratio:.0f}), {self.annotations} annotations, "
                f"{self.bytes_on_disk / 1e6:.1f} MB in {self.seconds:.1f} s -> {self.out_dir}")


# --------------------------------------------------------------------------- geometry

@dataclass
class _Geometry:
    uid: str
    subset: int
    size: tuple[int, int, int]            # x, y, z (cols, rows, slices)
    spacing: tuple[float, float, float]   # mm, x y z
    origin: tuple[float, float, float]    # world mm of voxel (0, 0, 0) as stored
    direction: tuple[float, ...]          # row-major 3x3
    flipped: bool

    def id_cri_to_cri(self, cri_id: np.ndarray) -> np.ndarray:
        """Generation frame (never flipped) -> the stored array's (col, row, index)."""
        cri = np.array(cri_id, dtype=np.float64, copy=True)
        if self.flipped:
            cri[..., 0] = (self.size[0] - 1) - cri[..., 0]
            cri[..., 1] = (self.size[1] - 1) - cri[..., 1]
        return cri

    def cri_to_xyz(self, cri: np.ndarray) -> np.ndarray:
        d = np.array(self.direction, dtype=np.float64).reshape(3, 3)
        scaled = np.asarray(cri, dtype=np.float64) * np.array(self.spacing)
        return scaled @ d.T + np.array(self.origin)

    def to_json(self) -> dict:
        return {"uid": self.uid, "subset": self.subset, "size_xyz": list(self.size),
                "spacing_xyz": list(self.spacing), "origin_xyz": list(self.origin),
                "direction": list(self.direction), "flipped": self.flipped}


def _make_uid(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        digits = rng.integers(0, 10, size=30)
        digits[0] = rng.integers(1, 10)
        uid = UID_PREFIX + "".join(str(int(d)) for d in digits)
        if uid not in taken:
            taken.add(uid)
            return uid


def _make_geometry(rng: np.random.Generator, uid: str, subset: int, size_xy: int,
                   slices: tuple[int, int], flipped: bool) -> _Geometry:
    nz = int(rng.integers(slices[0], slices[1] + 1))
    sxy = round(float(rng.uniform(0.6, 0.9)), 6)
    sz = float(rng.choice(_SLICE_SPACINGS_MM))
    spacing = (sxy, sxy, sz)
    size = (size_xy, size_xy, nz)
    # World position of the body's centre (x, y) and of the first slice (z).
    centre_x = float(rng.uniform(-20.0, 20.0))
    centre_y = float(rng.uniform(-15.0, 25.0))
    z0 = round(float(rng.uniform(-380.0, -90.0)), 2)
    half_x = (size_xy - 1) / 2 * sxy
    if flipped:  # voxel 0 is the far corner: world x/y decrease along col/row
        origin = (round(centre_x + half_x, 2), round(centre_y + half_x, 2), z0)
        direction = FLIPPED_XY_DIRECTION
    else:
        origin = (round(centre_x - half_x, 2), round(centre_y - half_x, 2), z0)
        direction = IDENTITY_DIRECTION
    return _Geometry(uid, subset, size, spacing, origin, direction, flipped)


# --------------------------------------------------------------------------- anatomy

@dataclass
class _Anatomy:
    """Shape parameters, in normalised in-plane units (u, v) = ((col, row) - centre) / half."""

    half: float
    cx: float
    cy: float
    body_a: float
    body_b: float
    lungs: list[tuple[float, float, float, float]]   # (u centre, v centre, u semi, v semi)
    lung_t: tuple[float, float]                        # lungs span this fraction of slices
    rib_period_mm: float
    rib_phase: float
    rib_slant: float

    def lung_profile(self, t: np.ndarray) -> np.ndarray:
        """In-plane scale of the lungs along the slices (0 outside the lung's z range)."""
        t0, t1 = self.lung_t
        tt = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
        return np.maximum(np.maximum(np.sin(np.pi * tt), 0.0) ** 0.45, 1e-3)

    def lung_alpha(self, col: np.ndarray, row: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Soft lung mask (1 inside, 0 outside, a ~1 voxel ramp), broadcasting its inputs."""
        u = (col - self.cx) / self.half
        v = (row - self.cy) / self.half
        f = self.lung_profile(t)
        alpha = None
        for uc, vc, ua, va in self.lungs:
            a_u, a_v = ua * f, va * f
            level = np.sqrt(((u - uc) / a_u) ** 2 + ((v - vc) / a_v) ** 2)
            one = np.clip(0.5 + (1.0 - level) * (a_u * self.half), 0.0, 1.0)
            alpha = one if alpha is None else np.maximum(alpha, one)
        return alpha.astype(np.float32)


def _make_anatomy(rng: np.random.Generator, size_xy: int) -> _Anatomy:
    half = (size_xy - 1) / 2
    cx = half + float(rng.uniform(-0.02, 0.02)) * half
    cy = half + float(rng.uniform(-0.02, 0.02)) * half
    lungs = []
    for side in (-1.0, 1.0):
        scale = float(rng.uniform(0.9, 1.0))
        lungs.append((side * 0.40, float(rng.uniform(0.0, 0.04)), 0.26 * scale, 0.40 * scale))
    return _Anatomy(
        half=half, cx=cx, cy=cy,
        body_a=0.90 * float(rng.uniform(0.98, 1.02)), body_b=0.72 * float(rng.uniform(0.98, 1.02)),
        lungs=lungs, lung_t=(float(rng.uniform(0.02, 0.08)), float(rng.uniform(0.92, 0.98))),
        rib_period_mm=float(rng.uniform(22.0, 30.0)), rib_phase=float(rng.uniform(0, 2 * np.pi)),
        rib_slant=float(rng.uniform(0.6, 1.4)),
    )


def _blend(mean: np.ndarray, sig: np.ndarray, alpha: np.ndarray, hu, sigma: float) -> None:
    """mean := mean*(1-alpha) + alpha*hu, likewise for the noise level; in place."""
    mean += alpha * (hu - mean)
    sig += alpha * (sigma - sig)


@dataclass
class _Nodule:
    cri: np.ndarray          # generation frame, integer voxel centre (col, row, index)
    diameter_mm: float
    hu: float
    touches_vessel: bool = False


def _paint_segment(vessel: np.ndarray, spacing: np.ndarray, p0: np.ndarray, p1: np.ndarray,
                   r0: float, r1: float) -> None:
    """Max-composite a tapered tube (ends p0, p1 in mm, generation frame) into ``vessel``."""
    nz, ny, nx = vessel.shape
    rmax = max(r0, r1)
    lo = np.floor((np.minimum(p0, p1) - rmax) / spacing).astype(int) - 1
    hi = np.ceil((np.maximum(p0, p1) + rmax) / spacing).astype(int) + 2
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, (nx, ny, nz))
    if np.any(hi <= lo):
        return
    x = (np.arange(lo[0], hi[0]) * spacing[0])[None, None, :]
    y = (np.arange(lo[1], hi[1]) * spacing[1])[None, :, None]
    z = (np.arange(lo[2], hi[2]) * spacing[2])[:, None, None]
    d = p1 - p0
    dd = float(d @ d) or 1e-9
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / dd
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2
                   + (z - p0[2] - t * d[2]) ** 2)
    alpha = np.clip((r0 + t * (r1 - r0) - dist) / spacing[0] + 0.5, 0.0, 1.0)
    view = vessel[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    np.maximum(view, alpha.astype(np.float32), out=view)


def _vessel_tree(rng: np.random.Generator, anat: _Anatomy, size: tuple[int, int, int],
                 spacing: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Branching random walks from each lung's hilum, in mm (generation frame)."""
    nx, ny, nz = size
    sxy = float(spacing[0])
    segments: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    scale = nx / 160                      # keep the vessel density of a 160-voxel slice
    limit = int((150 + 8 * nz) * scale ** 2)
    r_start = sxy * min(1.0, max(0.6, scale))   # thinner trunks in the lungs of tiny sets

    def inside_lung(p: np.ndarray) -> bool:
        c, r, k = p / spacing
        if not (0 <= c <= nx - 1 and 0 <= r <= ny - 1 and 0 <= k <= nz - 1):
            return False
        a = anat.lung_alpha(np.array(c), np.array(r), np.array(k / max(nz - 1, 1)))
        return float(a) > 0.5

    for uc, vc, ua, va in anat.lungs:
        side = 1.0 if uc > 0 else -1.0
        stack = []
        for _ in range(max(2, round(int(rng.integers(7, 12)) * scale))):
            k = (nz - 1) * float(np.clip(rng.normal(0.5, 0.08), 0.3, 0.7))
            f = float(anat.lung_profile(np.array(k / max(nz - 1, 1))))
            u = uc - side * 0.55 * ua * f
            v = vc + float(rng.uniform(-0.3, 0.3)) * va * f
            start = np.array([anat.cx + u * anat.half, anat.cy + v * anat.half, k]) * spacing
            d = np.array([side * rng.uniform(0.1, 0.8), rng.uniform(-0.6, 0.6),
                          rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 1.2)])
            stack.append((start, d / np.linalg.norm(d), r_start * float(rng.uniform(2.2, 3.0))))
        while stack and len(segments) < limit:
            p, d, r = stack.pop()
            for _ in range(40):
                if r < sxy or len(segments) >= limit:
                    break
                step = float(rng.uniform(2.5, 4.5))
                q = p + d * step
                if not inside_lung(q):
                    break
                r_next = r * float(rng.uniform(0.92, 0.98))
                segments.append((p, q, r, r_next))
                if rng.random() < 0.22:
                    child = d + rng.normal(0.0, 0.8, size=3)
                    stack.append((q, child / np.linalg.norm(child), r_next * 0.75))
                    r_next *= 0.88
                d = d + rng.normal(0.0, 0.3, size=3)
                d /= np.linalg.norm(d)
                p, r = q, r_next
    return segments


def _place_nodules(rng: np.random.Generator, count: int, lung_core: np.ndarray,
                   clear: np.ndarray, spacing: np.ndarray) -> list[_Nodule]:
    """Spheres (in mm) inside ``lung_core`` with a 2 mm rim of it, clear of vessels (``clear``)
    for 1 mm round them, apart from each other. A nodule that does not fit is shrunk, down to
    4 mm; if even that fails the vessel rule is dropped (a juxtavascular nodule) and, last,
    the nodule is left out."""
    shape = np.array(lung_core.shape[::-1])              # x, y, z
    rim = max(2.0, 2 * float(spacing[0]))
    nodules: list[_Nodule] = []
    lo_d, hi_d = _NODULE_DIAMETER_MM

    def fits(centre: np.ndarray, diameter: float, need_clear: bool) -> bool:
        reach = diameter / 2 + rim
        ext = np.ceil(reach / spacing).astype(int)
        lo, hi = centre - ext, centre + ext + 1
        if np.any(lo < 0) or np.any(hi > shape):
            return False
        if any(np.linalg.norm((centre - n.cri) * spacing) < (diameter + n.diameter_mm) / 2 + 3
               for n in nodules):
            return False
        g = [((np.arange(lo[a], hi[a]) - centre[a]) * spacing[a]) for a in range(3)]
        d2 = g[2][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[0][None, None, :] ** 2
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        if not np.all(lung_core[box][d2 <= reach ** 2]):
            return False
        return not need_clear or bool(np.all(clear[box][d2 <= (diameter / 2 + 1.0) ** 2]))

    for _ in range(count):
        wanted = lo_d + (hi_d - lo_d) * float(rng.beta(1.3, 2.6))
        placed = None
        for need_clear in (True, False):
            pool = np.flatnonzero(lung_core & clear if need_clear else lung_core)
            diameter = wanted
            while placed is None and pool.size:
                for _try in range(40):
                    k, r, c = np.unravel_index(int(pool[rng.integers(0, pool.size)]),
                                               lung_core.shape)
                    centre = np.array([c, r, k], dtype=np.int64)
                    if fits(centre, diameter, need_clear):
                        placed = _Nodule(centre, round(diameter, 3),
                                         float(rng.uniform(20.0, 100.0)), not need_clear)
                        break
                if diameter <= lo_d:
                    break
                diameter = max(lo_d, diameter * 0.8)
            if placed is not None:
                nodules.append(placed)
                break
    return nodules


def _paint_nodule(mean: np.ndarray, sig: np.ndarray, n: _Nodule, spacing: np.ndarray) -> None:
    nz, ny, nx = mean.shape
    radius = n.diameter_mm / 2
    ext = np.ceil((radius + 2 * spacing[0]) / spacing).astype(int)
    lo = np.maximum(n.cri - ext, 0)
    hi = np.minimum(n.cri + ext + 1, (nx, ny, nz))
    gx = ((np.arange(lo[0], hi[0]) - n.cri[0]) * spacing[0])[None, None, :]
    gy = ((np.arange(lo[1], hi[1]) - n.cri[1]) * spacing[1])[None, :, None]
    gz = ((np.arange(lo[2], hi[2]) - n.cri[2]) * spacing[2])[:, None, None]
    dist = np.sqrt(gx ** 2 + gy ** 2 + gz ** 2)
    alpha = np.clip((radius - dist) / spacing[0] + 0.5, 0.0, 1.0).astype(np.float32)
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    m, s = mean[sl], sig[sl]
    _blend(m, s, alpha, np.float32(n.hu), 25.0)


def _far_from_nodules(p_mm: np.ndarray, nodules: list[_Nodule], spacing: np.ndarray,
                      margin_mm: float) -> np.ndarray:
    ok = np.ones(len(p_mm), dtype=bool)
    for n in nodules:
        dist = np.linalg.norm(p_mm - n.cri * spacing, axis=1)
        ok &= dist > n.diameter_mm / 2 + margin_mm
    return ok


def _negatives(rng: np.random.Generator, count: int, lung_alpha: np.ndarray,
               vessel: np.ndarray, segments, nodules: list[_Nodule],
               spacing: np.ndarray) -> tuple[np.ndarray, int]:
    """``count`` class-0 centres (generation-frame cri, float): about half on vessels."""
    nz, ny, nx = lung_alpha.shape
    upper = np.array([nx - 1, ny - 1, nz - 1], dtype=np.float64)
    margin = 3.0 * float(spacing.max())
    picked: list[np.ndarray] = []
    n_vessel = 0
    want_vessel = count // 2
    if segments and want_vessel:
        p0 = np.array([s[0] for s in segments])
        p1 = np.array([s[1] for s in segments])
        radius = np.array([s[2] for s in segments])
        weight = np.linalg.norm(p1 - p0, axis=1) * radius
        weight /= weight.sum()
        tries = 8 * want_vessel
        which = rng.choice(len(segments), size=tries, p=weight)
        t = rng.uniform(0.0, 1.0, size=tries)[:, None]
        pts = p0[which] + t * (p1[which] - p0[which])
        cri = np.clip(pts / spacing, 0.0, upper)
        idx = np.rint(cri).astype(int)
        ok = lung_alpha[idx[:, 2], idx[:, 1], idx[:, 0]] > 0.5
        ok &= vessel[idx[:, 2], idx[:, 1], idx[:, 0]] > 0.5
        ok &= _far_from_nodules(cri * spacing, nodules, spacing, margin)
        chosen = cri[ok][:want_vessel]
        picked.append(chosen)
        n_vessel = len(chosen)
    want_lung = count - n_vessel
    parenchyma = np.flatnonzero((lung_alpha >= 0.99) & (vessel < 0.05))
    if want_lung and parenchyma.size:
        tries = 4 * want_lung + 16
        flat = parenchyma[rng.integers(0, parenchyma.size, size=tries)]
        k, r, c = np.unravel_index(flat, lung_alpha.shape)
        cri = np.stack([c, r, k], axis=1).astype(np.float64)
        cri = np.clip(cri + rng.uniform(-0.45, 0.45, size=cri.shape), 0.0, upper)
        ok = _far_from_nodules(cri * spacing, nodules, spacing, margin)
        picked.append(cri[ok][:want_lung])
    out = np.concatenate(picked) if picked else np.zeros((0, 3))
    return out, n_vessel


@dataclass
class _Series:
    geometry: _Geometry
    volume: np.ndarray                 # int16 (index, row, col) as stored
    nodules: list[_Nodule]
    candidates: list[tuple[np.ndarray, int]]    # (xyz, class)
    annotations: list[tuple[np.ndarray, float]]  # (xyz, diameter_mm)
    vessel_negatives: int


def _make_series(rng: np.random.Generator, geom: _Geometry, nodule_count: int,
                 negatives: int) -> _Series:
    nx, ny, nz = geom.size
    spacing = np.array(geom.spacing)
    anat = _make_anatomy(rng, nx)

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
    _blend(mean, sig, body[None], np.float32(40.0), 18.0)
    fat = body * np.clip((rho - 0.93) * ramp + 0.5, 0.0, 1.0).astype(np.float32)
    _blend(mean, sig, fat[None], np.float32(-90.0), 18.0)

    # Ribs: a ring just under the fat, cut into slanted bands along z.
    ring = np.clip((0.035 - np.abs(rho - 0.875)) * ramp + 0.5, 0.0, 1.0).astype(np.float32)
    theta = np.arctan2(v2, u2).astype(np.float32)
    z_mm = (np.arange(nz, dtype=np.float32) * np.float32(spacing[2]))[:, None, None]
    band = np.sin(np.float32(2 * np.pi / anat.rib_period_mm) * z_mm
                  + np.float32(anat.rib_slant) * theta[None] + np.float32(anat.rib_phase))
    ribs = ring[None] * np.clip((band - np.float32(0.35)) * 4.0, 0.0, 1.0)
    _blend(mean, sig, ribs, np.float32(650.0), 60.0)
    # A vertebral body: cortical shell round cancellous bone.
    r_sp = np.sqrt(u2 ** 2 + (v2 - 0.53 * anat.body_b / 0.72) ** 2)
    spine = np.clip((0.11 - r_sp) * anat.half + 0.5, 0.0, 1.0).astype(np.float32)
    _blend(mean, sig, spine[None], np.float32(800.0), 60.0)
    marrow = np.clip((0.08 - r_sp) * anat.half + 0.5, 0.0, 1.0).astype(np.float32)
    _blend(mean, sig, marrow[None], np.float32(450.0), 50.0)
    # The trachea, an air tube between the lungs near the top.
    trachea2 = np.clip((0.05 - np.sqrt(u2 ** 2 + (v2 + 0.12) ** 2)) * anat.half + 0.5, 0, 1)
    trachea = trachea2.astype(np.float32)[None] * (t > 0.62).astype(np.float32)
    _blend(mean, sig, trachea, np.float32(-1000.0), 12.0)

    lung = anat.lung_alpha(col, row, t)
    lung_hu = np.float32(-865.0) + np.float32(45.0) * np.broadcast_to(v2[None], lung.shape)
    _blend(mean, sig, lung, lung_hu, 35.0)

    segments = _vessel_tree(rng, anat, geom.size, spacing)
    vessel = np.zeros((nz, ny, nx), dtype=np.float32)
    for p0, p1, r0, r1 in segments:
        _paint_segment(vessel, spacing, p0, p1, r0, r1)
    _blend(mean, sig, vessel * lung, np.float32(40.0), 20.0)

    # Nodules sit in parenchyma, clear of vessels where there is room (juxtavascular if not).
    nodules = _place_nodules(rng, nodule_count, lung >= 0.999, vessel < 0.02, spacing)

    for n in nodules:
        _paint_nodule(mean, sig, n, spacing)

    neg_cri, n_vessel = _negatives(rng, negatives, lung, vessel, segments, nodules, spacing)

    noise = rng.standard_normal((nz, ny, nx), dtype=np.float32)
    mean += noise * sig
    np.rint(mean, out=mean)
    np.clip(mean, _HU_MIN, _HU_MAX, out=mean)
    volume = mean.astype("<i2")
    if geom.flipped:
        volume = np.ascontiguousarray(volume[:, ::-1, ::-1])

    candidates: list[tuple[np.ndarray, int]] = []
    annotations: list[tuple[np.ndarray, float]] = []
    for n in nodules:
        centre = geom.cri_to_xyz(geom.id_cri_to_cri(n.cri.astype(np.float64)))
        jitter = rng.normal(size=3)
        jitter *= rng.uniform(0.0, _POSITIVE_JITTER_MM) / np.linalg.norm(jitter)
        annotations.append((centre, n.diameter_mm))
        candidates.append((centre + jitter, 1))
    for cri in neg_cri:
        candidates.append((geom.cri_to_xyz(geom.id_cri_to_cri(cri)), 0))
    order = rng.permutation(len(candidates))
    candidates = [candidates[i] for i in order]
    return _Series(geom, volume, nodules, candidates, annotations, n_vessel)


def _missing_series(rng: np.random.Generator, uid: str, nodules: int,
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


def _nodule_counts(rng: np.random.Generator, series: int, lo: int, hi: int) -> list[int]:
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


# --------------------------------------------------------------------------- writing

def _fmt(v: float) -> str:
    s = f"{v:.4f}"
    return "0.0000" if s == "-0.0000" else s


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, text=True) as fh:
        fh.write(text)


def _write_volume(series: _Series, out_dir: Path, partial: Path) -> list[str]:
    geom = series.geometry
    img = sitk.GetImageFromArray(series.volume)      # array (z, y, x) -> image x y z
    img.SetSpacing(geom.spacing)
    img.SetOrigin(geom.origin)
    img.SetDirection(geom.direction)
    tmp_mhd = partial / f"{geom.uid}.mhd"
    sitk.WriteImage(img, str(tmp_mhd), False)        # useCompression=False: .mhd + .raw
    subset_dir = out_dir / f"subset{geom.subset}"
    subset_dir.mkdir(parents=True, exist_ok=True)
    raw, mhd = f"{geom.uid}.raw", f"{geom.uid}.mhd"
    os.replace(partial / raw, subset_dir / raw)      # data first, header last
    os.replace(tmp_mhd, subset_dir / mhd)
    return [f"subset{geom.subset}/{raw}", f"subset{geom.subset}/{mhd}"]


def _remove_previous(out_dir: Path) -> None:
    """Before an overwrite: drop the CSVs, and the volumes a previous synth run listed."""
    for name in (CANDIDATES_CSV, ANNOTATIONS_CSV):
        (out_dir / name).unlink(missing_ok=True)
    manifest = out_dir / MANIFEST_JSON
    if not manifest.exists():
        return
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError):
        files = []
    root = out_dir.resolve()
    for rel in files:
        path = (out_dir / rel).resolve()
        if path.parent.parent == root and path.suffix in (".mhd", ".raw"):
            path.unlink(missing_ok=True)
    manifest.unlink(missing_ok=True)


def _validate(series, size_xy, slices, negatives_per_series, nodules_per_series, subsets,
              flip_every, missing_series, seed) -> None:
    if series < 1:
        raise ValueError(f"series must be at least 1, not {series}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, not {seed}")
    if size_xy < 32:
        raise ValueError(f"size_xy must be at least 32 voxels, not {size_xy}")
    if len(slices) != 2 or not 8 <= slices[0] <= slices[1]:
        raise ValueError(f"slices must be (min, max) with 8 <= min <= max, not {slices}")
    if negatives_per_series < 0:
        raise ValueError("negatives_per_series must be non-negative")
    if len(nodules_per_series) != 2 or not 0 <= nodules_per_series[0] <= nodules_per_series[1]:
        raise ValueError(f"nodules_per_series must be (min, max), not {nodules_per_series}")
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, not {subsets}")
    if flip_every < 0 or missing_series < 0:
        raise ValueError("flip_every and missing_series must be non-negative")


def write_synthetic_dataset(out_dir, series: int = 10, seed: int = 0, *,
                            size_xy: int = 160, slices: tuple[int, int] = (48, 72),
                            negatives_per_series: int = 150,
                            nodules_per_series: tuple[int, int] = (0, 1),
                            subsets: int = 2, flip_every: int = 4,
                            missing_series: int = 1, overwrite: bool = False,
                            log: Callable[[str], None] | None = None) -> SynthSummary:
    """Write a LUNA16-format synthetic data set under ``out_dir``; see the module docstring.

    Series ``i`` (0-based) goes to ``subset{i % subsets}``; series ``flip_every - 1``,
    ``2 * flip_every - 1``, ... have x/y flipped (``flip_every=0``: none). The nodule counts
    lie in ``nodules_per_series`` (inclusive) and add up to ``series * (min + max) / 2``.
    ``missing_series`` extra series (one nodule and ``negatives_per_series`` negatives each)
    are listed in the CSVs but not written. Raises FileExistsError if ``out_dir`` already has
    a candidates.csv, unless ``overwrite`` (which also deletes the volumes a previous run
    recorded in synth.json).
    """
    started = time.perf_counter()
    _validate(series, size_xy, slices, negatives_per_series, nodules_per_series, subsets,
              flip_every, missing_series, seed)
    say = log or (lambda _line: None)
    out = Path(out_dir)
    if (out / CANDIDATES_CSV).exists():
        if not overwrite:
            raise FileExistsError(
                f"{out / CANDIDATES_CSV} already exists: refusing to write a synthetic data set "
                f"over it (choose another folder, or overwrite=True / --overwrite)")
        _remove_previous(out)
    elif (out / MANIFEST_JSON).exists():      # an interrupted synth run: replace its volumes
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)

    master = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    counts = _nodule_counts(master, series, *nodules_per_series)
    taken: set[str] = set()
    series_rngs = [np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
                   for i in range(series)]
    geoms = []
    for i, rng in enumerate(series_rngs):
        flipped = flip_every > 0 and (i + 1) % flip_every == 0
        geoms.append(_make_geometry(rng, _make_uid(rng, taken), i % subsets, size_xy,
                                    tuple(slices), flipped))
    missing_uids = [_make_uid(master, taken) for _ in range(missing_series)]
    files = [f"subset{g.subset}/{g.uid}.{ext}" for g in geoms for ext in ("raw", "mhd")]
    manifest = {
        "format": MANIFEST_FORMAT, "generator": "luna_core.synth", "complete": False,
        "seed": seed,
        "options": {"series": series, "size_xy": size_xy, "slices": list(slices),
                    "negatives_per_series": negatives_per_series,
                    "nodules_per_series": list(nodules_per_series), "subsets": subsets,
                    "flip_every": flip_every, "missing_series": missing_series},
        "files": files,
    }
    _write_text_atomic(out / MANIFEST_JSON, json.dumps(manifest, indent=1) + "\n")

    cand_rows: list[tuple[str, np.ndarray, int]] = []
    ann_rows: list[tuple[str, np.ndarray, float]] = []
    series_info = []
    nbytes = 0
    partial = out / _PARTIAL_DIR
    partial.mkdir(exist_ok=True)
    try:
        for i, (geom, rng) in enumerate(zip(geoms, series_rngs)):
            t0 = time.perf_counter()
            s = _make_series(rng, geom, counts[i], negatives_per_series)
            for rel in _write_volume(s, out, partial):
                nbytes += (out / rel).stat().st_size
            cand_rows += [(geom.uid, xyz, cls) for xyz, cls in s.candidates]
            ann_rows += [(geom.uid, xyz, d) for xyz, d in s.annotations]
            info = geom.to_json()
            info["nodules"] = [{"xyz": [round(float(v), 4) for v in xyz], "diameter_mm": d,
                                "touches_vessel": n.touches_vessel}
                               for (xyz, d), n in zip(s.annotations, s.nodules)]
            info["nodules_wanted"] = counts[i]
            info["candidates"] = len(s.candidates)
            info["vessel_negatives"] = s.vessel_negatives
            series_info.append(info)
            nx, ny, nz = geom.size
            say(f"series {i + 1}/{series} subset{geom.subset} {geom.uid[-8:]}: "
                f"{nx}x{ny}x{nz} spacing {geom.spacing[0]:.2f}/{geom.spacing[2]:.2f} mm"
                f"{' flipped' if geom.flipped else ''}, {len(s.nodules)} nodule(s)"
                f"{'' if len(s.nodules) == counts[i] else f' of {counts[i]} (no room)'}, "
                f"{len(s.candidates)} candidates ({time.perf_counter() - t0:.2f} s)")
        missing_info = []
        for uid in missing_uids:
            cands, anns = _missing_series(master, uid, min(1, nodules_per_series[1]),
                                          negatives_per_series)
            cand_rows += [(uid, xyz, cls) for xyz, cls in cands]
            ann_rows += [(uid, xyz, d) for xyz, d in anns]
            missing_info.append({"uid": uid, "candidates": len(cands), "annotations": len(anns)})
        if missing_uids:
            say(f"{len(missing_uids)} series listed in the CSVs but not written "
                f"(as when only some subsets are downloaded)")

        # CSVs last: grouped by series uid (as in the release), stable inside a series.
        cand_rows.sort(key=lambda row: row[0])
        ann_rows.sort(key=lambda row: row[0])
        ann_text = ANNOTATIONS_HEADER + "\n" + "".join(
            f"{uid},{_fmt(x)},{_fmt(y)},{_fmt(z)},{d:.3f}\n" for uid, (x, y, z), d in ann_rows)
        cand_text = CANDIDATES_HEADER + "\n" + "".join(
            f"{uid},{_fmt(x)},{_fmt(y)},{_fmt(z)},{cls}\n" for uid, (x, y, z), cls in cand_rows)
        _write_text_atomic(out / ANNOTATIONS_CSV, ann_text)
        _write_text_atomic(out / CANDIDATES_CSV, cand_text)
        nbytes += len(ann_text) + len(cand_text)
        manifest.update(complete=True, series=series_info, missing=missing_info)
        _write_text_atomic(out / MANIFEST_JSON, json.dumps(manifest, indent=1) + "\n")
    finally:
        shutil.rmtree(partial, ignore_errors=True)

    positives = sum(1 for row in cand_rows if row[2] == 1)
    summary = SynthSummary(
        out_dir=str(out), series=series, candidates=len(cand_rows), positives=positives,
        annotations=len(ann_rows), seconds=time.perf_counter() - started,
        missing_series=len(missing_uids), flipped_series=sum(g.flipped for g in geoms),
        bytes_on_disk=nbytes, seed=seed, series_uids=[g.uid for g in geoms],
        missing_uids=missing_uids)
    say(summary.describe())
    return summary


# --------------------------------------------------------------------------- command line

def build_parser(prog: str = "python -m luna_core.data.synth") -> argparse.ArgumentParser:
    """The one synth command line: `luna-tui synth` and `python -m luna_core.data.synth`."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write a demo data set in the real LUNA16 layout (subset*/ .mhd/.raw, "
                    "candidates.csv, annotations.csv) that the model can learn from.")
    parser.add_argument("--out", required=True, help="folder to write (created if needed)")
    parser.add_argument("--series", type=int, default=10, help="number of CT series")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--size-xy", type=int, default=160, help="in-plane voxels per slice")
    parser.add_argument("--slices", type=int, nargs=2, default=(48, 72), metavar=("MIN", "MAX"),
                        help="slices per series")
    parser.add_argument("--negatives-per-series", "--negatives", type=int, default=280,
                        help="class-0 candidates per series")
    parser.add_argument("--nodules", type=int, nargs=2, default=(10, 14), metavar=("MIN", "MAX"),
                        help="nodules per series")
    parser.add_argument("--subsets", type=int, default=2, help="subset folders")
    parser.add_argument("--flip-every", type=int, default=4,
                        help="every Nth series has x/y flipped (0: none)")
    parser.add_argument("--missing-series", type=int, default=1,
                        help="series listed in the CSVs but not written")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing data set in --out")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m luna_core.data.synth") -> int:
    args = build_parser(prog).parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        summary = write_synthetic_dataset(
            args.out, args.series, args.seed, size_xy=args.size_xy, slices=tuple(args.slices),
            negatives_per_series=args.negatives_per_series,
            nodules_per_series=tuple(args.nodules), subsets=args.subsets,
            flip_every=args.flip_every, missing_series=args.missing_series,
            overwrite=args.overwrite, log=None if args.quiet else log)
    except (FileExistsError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.quiet:
        print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
