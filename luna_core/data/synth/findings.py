"""The nodules a synthetic CT holds: spheres of 4-20 mm, solid (soft-tissue HU, like the
vessels) or ground-glass (faint), isolated in the parenchyma, touching a vessel
(juxtavascular) or the chest wall (juxtapleural), as real ones are. What tells a nodule from
the decoys (luna_core.data.synth.decoys) is its shape, not its brightness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from luna_core.data.synth.anatomy import blend
from luna_core.data.synth.dataset_spec import (
    GROUND_GLASS_HU,
    GROUND_GLASS_SHARE,
    NODULE_DIAMETER_MM,
    NODULE_KIND_SHARES,
    SMALL_NODULE_MM,
    SMALL_NODULE_SHARE,
    SOLID_HU,
)

ISOLATED, JUXTAVASCULAR, JUXTAPLEURAL = "isolated", "juxtavascular", "juxtapleural"


@dataclass
class Nodule:
    cri: np.ndarray          # generation frame, integer voxel centre (col, row, index)
    diameter_mm: float
    hu: float
    kind: str = ISOLATED
    solid: bool = True

    @property
    def touches_vessel(self) -> bool:
        return self.kind == JUXTAVASCULAR


@dataclass
class Site:
    """Where a finding can be put: the lung, its vessels and its wall (generation frame)."""

    lung_core: np.ndarray        # bool (index, row, col): well inside the lung
    clear: np.ndarray            # bool: no vessel there
    spacing: np.ndarray          # mm, x y z
    segments: list               # the vessels: (p0 mm, p1 mm, r0 mm, r1 mm)
    pleura_mm: np.ndarray        # (N, 3) points on the lung's wall, mm
    normal: np.ndarray           # (N, 3) unit vectors into the lung there

    @property
    def shape_xyz(self) -> np.ndarray:
        return np.array(self.lung_core.shape[::-1])


def draw_diameter(rng: np.random.Generator) -> float:
    """About a third small (4-6 mm: the hardest to find), the rest 6-20 mm, most of them
    under 12 mm, as in LUNA16's annotations."""
    lo, hi = NODULE_DIAMETER_MM
    if rng.random() < SMALL_NODULE_SHARE:
        return float(rng.uniform(lo, SMALL_NODULE_MM))
    return SMALL_NODULE_MM + (hi - SMALL_NODULE_MM) * float(rng.beta(1.2, 3.0))


def draw_hu(rng: np.random.Generator) -> tuple[float, bool]:
    if rng.random() < GROUND_GLASS_SHARE:
        return float(rng.uniform(*GROUND_GLASS_HU)), False
    return float(rng.uniform(*SOLID_HU)), True


def _sphere_box(centre: np.ndarray, reach_mm: float, spacing: np.ndarray, shape: np.ndarray):
    """The voxel box round ``centre`` (cri) of radius ``reach_mm`` and the squared distances
    in it (mm); None if it leaves the volume."""
    ext = np.ceil(reach_mm / spacing).astype(int)
    lo, hi = centre - ext, centre + ext + 1
    if np.any(lo < 0) or np.any(hi > shape):
        return None
    g = [((np.arange(lo[a], hi[a]) - centre[a]) * spacing[a]) for a in range(3)]
    d2 = g[2][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[0][None, None, :] ** 2
    return (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])), d2


def _apart(centre: np.ndarray, diameter: float, nodules: list[Nodule],
           spacing: np.ndarray) -> bool:
    return all(np.linalg.norm((centre - n.cri) * spacing) >= (diameter + n.diameter_mm) / 2 + 3
               for n in nodules)


def _isolated(rng, site: Site, diameter: float, nodules: list[Nodule]) -> np.ndarray | None:
    """A centre with the whole sphere (and a 2 mm rim) in the lung, 1 mm clear of vessels."""
    pool = np.flatnonzero(site.lung_core & site.clear)
    rim = max(2.0, 2 * float(site.spacing[0]))
    for _try in range(40 if pool.size else 0):
        k, r, c = np.unravel_index(int(pool[rng.integers(0, pool.size)]), site.lung_core.shape)
        centre = np.array([c, r, k], dtype=np.int64)
        if not _apart(centre, diameter, nodules, site.spacing):
            continue
        box = _sphere_box(centre, diameter / 2 + rim, site.spacing, site.shape_xyz)
        if box is None:
            continue
        sl, d2 = box
        if (np.all(site.lung_core[sl][d2 <= (diameter / 2 + rim) ** 2])
                and np.all(site.clear[sl][d2 <= (diameter / 2 + 1.0) ** 2])):
            return centre
    return None


def _in_lung(centre: np.ndarray, site: Site) -> bool:
    if np.any(centre < 0) or np.any(centre >= site.shape_xyz):
        return False
    return bool(site.lung_core[centre[2], centre[1], centre[0]])


def _juxtavascular(rng, site: Site, diameter: float, nodules: list[Nodule]) -> np.ndarray | None:
    """A sphere beside a vessel, overlapping its wall: the vessel runs into the nodule."""
    if not site.segments:
        return None
    for _try in range(40):
        p0, p1, r0, r1 = site.segments[int(rng.integers(0, len(site.segments)))]
        t = float(rng.uniform(0.0, 1.0))
        on = p0 + t * (p1 - p0)
        axis = (p1 - p0) / (np.linalg.norm(p1 - p0) or 1.0)
        side = rng.normal(size=3)
        side -= (side @ axis) * axis
        side /= np.linalg.norm(side) or 1.0
        r_vessel = r0 + t * (r1 - r0)
        gap = diameter / 2 + r_vessel * float(rng.uniform(-0.2, 0.6))
        centre = np.rint((on + side * gap) / site.spacing).astype(np.int64)
        if _in_lung(centre, site) and _apart(centre, diameter, nodules, site.spacing):
            return centre
    return None


def _juxtapleural(rng, site: Site, diameter: float, nodules: list[Nodule]) -> np.ndarray | None:
    """A sphere against the chest wall (or the mediastinum), most of it in the lung."""
    if not len(site.pleura_mm):
        return None
    for _try in range(40):
        j = int(rng.integers(0, len(site.pleura_mm)))
        depth = diameter / 2 * float(rng.uniform(0.65, 0.9))
        centre = np.rint((site.pleura_mm[j] + site.normal[j] * depth) / site.spacing)
        centre = centre.astype(np.int64)
        if _in_lung(centre, site) and _apart(centre, diameter, nodules, site.spacing):
            return centre
    return None


_PLACERS = {ISOLATED: _isolated, JUXTAVASCULAR: _juxtavascular, JUXTAPLEURAL: _juxtapleural}


def place_nodules(rng: np.random.Generator, count: int, site: Site) -> list[Nodule]:
    """``count`` nodules of the kinds in NODULE_KIND_SHARES. One that does not fit as drawn is
    shrunk (down to 4 mm), then placed as another kind, and left out last."""
    kinds = list(NODULE_KIND_SHARES)
    shares = np.array(list(NODULE_KIND_SHARES.values()))
    nodules: list[Nodule] = []
    lo_d = NODULE_DIAMETER_MM[0]
    for _ in range(count):
        wanted = draw_diameter(rng)
        hu, solid = draw_hu(rng)
        first = kinds[int(rng.choice(len(kinds), p=shares))]
        for kind in [first] + [k for k in kinds if k != first]:
            diameter, centre = wanted, None
            while centre is None:
                centre = _PLACERS[kind](rng, site, diameter, nodules)
                if centre is not None or diameter <= lo_d:
                    break
                diameter = max(lo_d, diameter * 0.8)
            if centre is not None:
                nodules.append(Nodule(centre, round(diameter, 3), hu, kind, solid))
                break
    return nodules


def paint_sphere(mean: np.ndarray, sig: np.ndarray, cri: np.ndarray, radius_mm: float,
                 hu: float, sigma: float, spacing: np.ndarray) -> None:
    """A sphere of ``hu`` with a one-voxel soft edge, clipped to the volume."""
    nz, ny, nx = mean.shape
    ext = np.ceil((radius_mm + 2 * spacing[0]) / spacing).astype(int)
    centre = np.rint(cri).astype(int)
    lo = np.maximum(centre - ext, 0)
    hi = np.minimum(centre + ext + 1, (nx, ny, nz))
    if np.any(hi <= lo):
        return
    gx = ((np.arange(lo[0], hi[0]) - cri[0]) * spacing[0])[None, None, :]
    gy = ((np.arange(lo[1], hi[1]) - cri[1]) * spacing[1])[None, :, None]
    gz = ((np.arange(lo[2], hi[2]) - cri[2]) * spacing[2])[:, None, None]
    dist = np.sqrt(gx ** 2 + gy ** 2 + gz ** 2)
    alpha = np.clip((radius_mm - dist) / spacing[0] + 0.5, 0.0, 1.0).astype(np.float32)
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    blend(mean[sl], sig[sl], alpha, np.float32(hu), sigma)


def paint_nodule(mean: np.ndarray, sig: np.ndarray, n: Nodule, spacing: np.ndarray) -> None:
    paint_sphere(mean, sig, n.cri.astype(np.float64), n.diameter_mm / 2, n.hu,
                 25.0 if n.solid else 35.0, spacing)


def far_from_nodules(p_mm: np.ndarray, nodules: list[Nodule], spacing: np.ndarray,
                     margin_mm: float) -> np.ndarray:
    ok = np.ones(len(p_mm), dtype=bool)
    for n in nodules:
        dist = np.linalg.norm(p_mm - n.cri * spacing, axis=1)
        ok &= dist > n.diameter_mm / 2 + margin_mm
    return ok
