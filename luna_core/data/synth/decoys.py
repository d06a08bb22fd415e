"""The class-0 candidates of a synthetic CT: what a candidate detector proposes that is not a
nodule. Most are as bright at their centre as a nodule, as in real candidate lists, so that
brightness alone does not find the nodules (a rule by the central HU scores an AUC of about
0.6-0.7 on them; tests/test_synth_decoys.py keeps it under 0.75):

- parenchyma: a point of plain lung (the easy ones);
- vessel: a point on a vessel's axis;
- end_on_vessel: a vessel running along the slices, seen end-on: a round, nodule-sized blob
  in every axial slice, a tube only in 3D;
- branching: where a vessel forks;
- pleural_bump: a nodule-sized dome of soft tissue on the lung's wall;
- pleura: the lung's wall itself.
"""

from __future__ import annotations

import numpy as np

from luna_core.data.synth.dataset_spec import DECOY_KIND_SHARES
from luna_core.data.synth.findings import Nodule, Site, far_from_nodules, paint_sphere

PARENCHYMA, VESSEL, END_ON_VESSEL = "parenchyma", "vessel", "end_on_vessel"
BRANCHING, PLEURAL_BUMP, PLEURA = "branching", "pleural_bump", "pleura"
END_ON_RADIUS_MM = (2.0, 3.5)
BUMP_RADIUS_MM = (2.5, 5.0)
#: The least gap (mm) between a decoy and a nodule's surface: a point of lung a few mm
#: beside a nodule is the nodule's chunk, off-centre, more than a candidate of its own.
DECOY_MARGIN_MM = 6.0


def decoy_counts(count: int) -> dict[str, int]:
    """``count`` split between the kinds by their shares (parenchyma takes the rounding)."""
    counts = {kind: int(share * count) for kind, share in DECOY_KIND_SHARES.items()}
    counts[PARENCHYMA] += count - sum(counts.values())
    return counts


def pleura(lung: np.ndarray, spacing: np.ndarray, rng: np.random.Generator,
           most: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Points on the lung's wall (mm, generation frame) and the unit normals into the lung
    there, at most ``most`` of them."""
    edge = np.flatnonzero((lung > 0.25) & (lung < 0.75))
    if edge.size > most:
        edge = rng.choice(edge, size=most, replace=False)
    if not edge.size:
        return np.zeros((0, 3)), np.zeros((0, 3))
    k, r, c = np.unravel_index(np.sort(edge), lung.shape)
    nz, ny, nx = lung.shape
    grad = np.stack([
        lung[k, r, np.minimum(c + 1, nx - 1)] - lung[k, r, np.maximum(c - 1, 0)],
        lung[k, np.minimum(r + 1, ny - 1), c] - lung[k, np.maximum(r - 1, 0), c],
        lung[np.minimum(k + 1, nz - 1), r, c] - lung[np.maximum(k - 1, 0), r, c],
    ], axis=1) / spacing
    norm = np.linalg.norm(grad, axis=1)
    ok = norm > 0
    points = np.stack([c, r, k], axis=1)[ok] * spacing
    return points, grad[ok] / norm[ok, None]


def end_on_vessels(rng: np.random.Generator, count: int, lung: np.ndarray,
                   spacing: np.ndarray) -> list:
    """``count`` straight vessels running within 20 degrees of the slice axis, inside the
    lung: (p0 mm, p1 mm, r0 mm, r1 mm) like the tree's segments."""
    inside = np.flatnonzero(lung >= 0.99)
    nz = lung.shape[0]
    segments: list = []
    for _try in range(20 * count if inside.size else 0):
        if len(segments) >= count:
            break
        k, r, c = np.unravel_index(int(inside[rng.integers(0, inside.size)]), lung.shape)
        mid = np.array([c, r, k], dtype=np.float64) * spacing
        tilt = np.radians(float(rng.uniform(0.0, 20.0)))
        turn = float(rng.uniform(0.0, 2 * np.pi))
        axis = np.array([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), np.cos(tilt)])
        half = min(float(rng.uniform(8.0, 18.0)), 0.45 * nz * float(spacing[2]))
        p0, p1 = mid - axis * half, mid + axis * half
        ends = np.rint(np.stack([p0, p1]) / spacing).astype(int)
        if np.any(ends < 0) or np.any(ends >= np.array(lung.shape[::-1])):
            continue
        if not all(lung[e[2], e[1], e[0]] > 0.5 for e in ends):
            continue
        radius = float(rng.uniform(*END_ON_RADIUS_MM))
        segments.append((p0, p1, radius, radius * float(rng.uniform(0.85, 1.0))))
    return segments


def paint_bumps(rng: np.random.Generator, mean: np.ndarray, sig: np.ndarray, site: Site,
                count: int, nodules: list[Nodule]) -> list:
    """``count`` domes of soft tissue on the lung's wall, away from the nodules: (centre mm,
    radius mm, normal)."""
    bumps: list = []
    if not len(site.pleura_mm):
        return bumps
    ok = far_from_nodules(site.pleura_mm, nodules, site.spacing, 6.0)
    pool = np.flatnonzero(ok)
    for j in rng.permutation(pool)[:count]:
        radius = float(rng.uniform(*BUMP_RADIUS_MM))
        centre = site.pleura_mm[j]
        paint_sphere(mean, sig, centre / site.spacing, radius, 40.0, 20.0, site.spacing)
        bumps.append((centre, radius, site.normal[j]))
    return bumps


def _on_segments(rng, segments: list, want: int) -> np.ndarray:
    """``want`` points on the axes of ``segments``, drawn by length x radius^2 (mm): the
    thick vessels, which fill a nodule-sized box round the point."""
    if not segments or want <= 0:
        return np.zeros((0, 3))
    p0 = np.array([s[0] for s in segments])
    p1 = np.array([s[1] for s in segments])
    weight = np.linalg.norm(p1 - p0, axis=1) * np.array([s[2] for s in segments]) ** 2
    which = rng.choice(len(segments), size=want, p=weight / weight.sum())
    t = rng.uniform(0.0, 1.0, size=want)[:, None]
    return p0[which] + t * (p1[which] - p0[which])


def _into_lung(rng, site: Site, want: int) -> np.ndarray:
    """``want`` points of the wall, each 0.5-2.5 mm into the lung (mm)."""
    order = rng.permutation(len(site.pleura_mm))[:want]
    depth = rng.uniform(0.5, 2.5, size=len(order))[:, None]
    return site.pleura_mm[order] + site.normal[order] * depth


def place_decoys(rng: np.random.Generator, count: int, site: Site, lung: np.ndarray,
                 vessel: np.ndarray, junctions: list, end_on: list, bumps: list,
                 nodules: list[Nodule]) -> tuple[np.ndarray, list[str]]:
    """``count`` class-0 centres (generation-frame cri, float) and their kinds. A kind with
    too few places (a tiny volume) leaves its share to the parenchyma."""
    spacing = site.spacing
    nz, ny, nx = lung.shape
    upper = np.array([nx - 1, ny - 1, nz - 1], dtype=np.float64)
    margin = max(3.0 * float(spacing.max()), DECOY_MARGIN_MM)
    wanted = decoy_counts(count)

    def usable(p_mm: np.ndarray, need_vessel: bool = False) -> np.ndarray:
        cri = np.clip(p_mm / spacing, 0.0, upper)
        idx = np.rint(cri).astype(int)
        ok = lung[idx[:, 2], idx[:, 1], idx[:, 0]] > (0.5 if need_vessel else 0.3)
        if need_vessel:
            ok &= vessel[idx[:, 2], idx[:, 1], idx[:, 0]] > 0.5
        return ok & far_from_nodules(p_mm, nodules, spacing, margin)

    proposals: dict[str, tuple[np.ndarray, bool]] = {
        VESSEL: (_on_segments(rng, site.segments, 8 * wanted[VESSEL]), True),
        END_ON_VESSEL: (np.array([s[0] + float(rng.uniform(0.3, 0.7)) * (s[1] - s[0])
                                  for s in end_on]).reshape(-1, 3), True),
        BRANCHING: (np.array([j + rng.uniform(-0.5, 0.5, size=3) for j in
                              rng.permutation(np.array(junctions).reshape(-1, 3))])
                    .reshape(-1, 3), True),
        PLEURAL_BUMP: (np.array([c + n * r * float(rng.uniform(0.2, 0.5))
                                 for c, r, n in bumps]).reshape(-1, 3), False),
        PLEURA: (_into_lung(rng, site, 8 * wanted[PLEURA]), False),
    }
    def off_bumps(p_mm: np.ndarray) -> np.ndarray:
        ok = np.ones(len(p_mm), dtype=bool)
        for centre, radius, _normal in bumps:
            ok &= np.linalg.norm(p_mm - centre, axis=1) > radius + 2.0
        return ok

    picked, kinds = [], []
    short = 0
    for kind, (p_mm, need_vessel) in proposals.items():
        if len(p_mm) and kind == PLEURA:
            p_mm = p_mm[off_bumps(p_mm)]
        take = p_mm[usable(p_mm, need_vessel)][:wanted[kind]] if len(p_mm) else p_mm
        short += wanted[kind] - len(take)
        picked.append(take / spacing)
        kinds += [kind] * len(take)
    want_lung = wanted[PARENCHYMA] + short
    parenchyma = np.flatnonzero((lung >= 0.99) & (vessel < 0.05))
    if want_lung and parenchyma.size:
        flat = parenchyma[rng.integers(0, parenchyma.size, size=4 * want_lung + 16)]
        k, r, c = np.unravel_index(flat, lung.shape)
        cri = np.stack([c, r, k], axis=1).astype(np.float64)
        cri = np.clip(cri + rng.uniform(-0.45, 0.45, size=cri.shape), 0.0, upper)
        ok = far_from_nodules(cri * spacing, nodules, spacing, margin) & off_bumps(cri * spacing)
        take = cri[ok][:want_lung]
        picked.append(take)
        kinds += [PARENCHYMA] * len(take)
    out = np.concatenate(picked) if picked else np.zeros((0, 3))
    return np.clip(out, 0.0, upper), kinds
