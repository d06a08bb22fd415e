"""Each synthetic series' geometry: its UID, subset, size, anisotropic spacing, origin and
direction (some with x and y flipped, as in real scans)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from luna_core.data.synth.dataset_spec import (
    FLIPPED_XY_DIRECTION,
    IDENTITY_DIRECTION,
    SLICE_SPACINGS_MM,
    UID_PREFIX,
)


@dataclass
class Geometry:
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


def make_uid(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        digits = rng.integers(0, 10, size=30)
        digits[0] = rng.integers(1, 10)
        uid = UID_PREFIX + "".join(str(int(d)) for d in digits)
        if uid not in taken:
            taken.add(uid)
            return uid


def make_geometry(rng: np.random.Generator, uid: str, subset: int, size_xy: int,
                  slices: tuple[int, int], flipped: bool) -> Geometry:
    nz = int(rng.integers(slices[0], slices[1] + 1))
    sxy = round(float(rng.uniform(0.6, 0.9)), 6)
    sz = float(rng.choice(SLICE_SPACINGS_MM))
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
    return Geometry(uid, subset, size, spacing, origin, direction, flipped)
