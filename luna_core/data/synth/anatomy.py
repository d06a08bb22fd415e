"""The chest a synthetic CT shows: body, fat, ribs, vertebra, lungs, and the vessel tree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Anatomy:
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


#: Slices kept free of lung at each end of a volume: the chunk is 32 slices, and a
#: candidate nearer the end than half of that is cut off-centre (the window is shifted
#: inside the volume), which in the short demo volumes was a third of the candidates.
LUNG_FREE_SLICES = 18


def make_anatomy(rng: np.random.Generator, size_xy: int, slices: int = 100) -> Anatomy:
    half = (size_xy - 1) / 2
    # (a volume under 48 slices cannot centre a 32-slice chunk on much of its lung anyway)
    margin = min(LUNG_FREE_SLICES / (slices - 1), 0.3) if slices >= 48 else 0.05
    cx = half + float(rng.uniform(-0.02, 0.02)) * half
    cy = half + float(rng.uniform(-0.02, 0.02)) * half
    lungs = []
    for side in (-1.0, 1.0):
        scale = float(rng.uniform(0.9, 1.0))
        lungs.append((side * 0.40, float(rng.uniform(0.0, 0.04)), 0.26 * scale, 0.40 * scale))
    return Anatomy(
        half=half, cx=cx, cy=cy,
        body_a=0.90 * float(rng.uniform(0.98, 1.02)), body_b=0.72 * float(rng.uniform(0.98, 1.02)),
        lungs=lungs, lung_t=(margin + float(rng.uniform(0.0, 0.04)),
                             1 - margin - float(rng.uniform(0.0, 0.04))),
        rib_period_mm=float(rng.uniform(22.0, 30.0)), rib_phase=float(rng.uniform(0, 2 * np.pi)),
        rib_slant=float(rng.uniform(0.6, 1.4)),
    )


def blend(mean: np.ndarray, sig: np.ndarray, alpha: np.ndarray, hu, sigma: float) -> None:
    """mean := mean*(1-alpha) + alpha*hu, likewise for the noise level; in place."""
    mean += alpha * (hu - mean)
    sig += alpha * (sigma - sig)


def paint_segment(vessel: np.ndarray, spacing: np.ndarray, p0: np.ndarray, p1: np.ndarray,
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


def vessel_tree(rng: np.random.Generator, anat: Anatomy, size: tuple[int, int, int],
                spacing: np.ndarray) -> tuple[list, list[np.ndarray]]:
    """Branching random walks from each lung's hilum, in mm (generation frame): the segments
    (p0, p1, r0, r1) and the points where a vessel forks."""
    nx, ny, nz = size
    sxy = float(spacing[0])
    segments: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    junctions: list[np.ndarray] = []
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
                    junctions.append(q)
                    r_next *= 0.88
                d = d + rng.normal(0.0, 0.3, size=3)
                d /= np.linalg.norm(d)
                p, r = q, r_next
    return segments, junctions
