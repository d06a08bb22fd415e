"""What the candidates point at: spherical nodules (with their annotations) and the
negatives, in parenchyma and on vessels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from luna_core.data.synth.anatomy import blend
from luna_core.data.synth.dataset_spec import NODULE_DIAMETER_MM


@dataclass
class Nodule:
    cri: np.ndarray          # generation frame, integer voxel centre (col, row, index)
    diameter_mm: float
    hu: float
    touches_vessel: bool = False


def place_nodules(rng: np.random.Generator, count: int, lung_core: np.ndarray,
                  clear: np.ndarray, spacing: np.ndarray) -> list[Nodule]:
    """Spheres (in mm) inside ``lung_core`` with a 2 mm rim of it, clear of vessels (``clear``)
    for 1 mm round them, apart from each other. A nodule that does not fit is shrunk, down to
    4 mm; if even that fails the vessel rule is dropped (a juxtavascular nodule) and, last,
    the nodule is left out."""
    shape = np.array(lung_core.shape[::-1])              # x, y, z
    rim = max(2.0, 2 * float(spacing[0]))
    nodules: list[Nodule] = []
    lo_d, hi_d = NODULE_DIAMETER_MM

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
                        placed = Nodule(centre, round(diameter, 3),
                                         float(rng.uniform(20.0, 100.0)), not need_clear)
                        break
                if diameter <= lo_d:
                    break
                diameter = max(lo_d, diameter * 0.8)
            if placed is not None:
                nodules.append(placed)
                break
    return nodules


def paint_nodule(mean: np.ndarray, sig: np.ndarray, n: Nodule, spacing: np.ndarray) -> None:
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
    blend(m, s, alpha, np.float32(n.hu), 25.0)


def far_from_nodules(p_mm: np.ndarray, nodules: list[Nodule], spacing: np.ndarray,
                     margin_mm: float) -> np.ndarray:
    ok = np.ones(len(p_mm), dtype=bool)
    for n in nodules:
        dist = np.linalg.norm(p_mm - n.cri * spacing, axis=1)
        ok &= dist > n.diameter_mm / 2 + margin_mm
    return ok


def place_negatives(rng: np.random.Generator, count: int, lung_alpha: np.ndarray,
                    vessel: np.ndarray, segments, nodules: list[Nodule],
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
        ok &= far_from_nodules(cri * spacing, nodules, spacing, margin)
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
        ok = far_from_nodules(cri * spacing, nodules, spacing, margin)
        picked.append(cri[ok][:want_lung])
    out = np.concatenate(picked) if picked else np.zeros((0, 3))
    return out, n_vessel
