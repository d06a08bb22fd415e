"""World (x, y, z millimetres) <-> voxel (index, row, col) coordinates.

With D the direction matrix (row-major ``TransformMatrix`` of the .mhd header), s the voxel
spacing (x, y, z), o the origin (world position of voxel 0,0,0) and cri = (col, row, index):

* voxel -> world: ``xyz = D @ (cri * s) + o``
* world -> voxel: ``cri = (inv(D) @ (xyz - o)) / s``, rounded to integers; irc = reversed(cri)

Unlike the book's version this is an exact inverse pair for any (orthonormal or merely
invertible) direction matrix, not only for symmetric ones. The array functions and the tuple
functions share one implementation written with element-wise operations, so a centre gives
the same voxel whether it is converted alone or in a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class IrcTuple(NamedTuple):
    index: int
    row: int
    col: int


class XyzTuple(NamedTuple):
    x: float
    y: float
    z: float


def _as_matrix(direction_a) -> np.ndarray:
    d = np.asarray(direction_a, dtype=np.float64)
    if d.shape == (9,):
        d = d.reshape(3, 3)
    if d.shape != (3, 3):
        raise ValueError(f"direction must be 3x3 (or 9 row-major values), got shape {d.shape}")
    return d


def _mat_rows(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``m @ v`` for every row v of ``v`` (N, 3), with a fixed summation order."""
    return v[:, 0:1] * m[:, 0] + v[:, 1:2] * m[:, 1] + v[:, 2:3] * m[:, 2]


def irc2xyz_array(irc_a, origin_xyz, vx_size_xyz, direction_a) -> np.ndarray:
    """(N, 3) voxel (index, row, col) -> (N, 3) float64 world (x, y, z)."""
    irc = np.asarray(irc_a, dtype=np.float64).reshape(-1, 3)
    cri = irc[:, ::-1]
    scaled = cri * np.asarray(vx_size_xyz, dtype=np.float64)
    return _mat_rows(_as_matrix(direction_a), scaled) + np.asarray(origin_xyz, dtype=np.float64)


def xyz2irc_array(xyz_a, origin_xyz, vx_size_xyz, direction_a) -> np.ndarray:
    """(N, 3) world (x, y, z) -> (N, 3) int64 voxel (index, row, col), rounded."""
    xyz = np.asarray(xyz_a, dtype=np.float64).reshape(-1, 3)
    inv = np.linalg.inv(_as_matrix(direction_a))
    rel = xyz - np.asarray(origin_xyz, dtype=np.float64)
    cri = _mat_rows(inv, rel) / np.asarray(vx_size_xyz, dtype=np.float64)
    return np.rint(cri[:, ::-1]).astype(np.int64)


def irc2xyz(coord_irc, origin_xyz, vx_size_xyz, direction_a) -> XyzTuple:
    xyz = irc2xyz_array(coord_irc, origin_xyz, vx_size_xyz, direction_a)[0]
    return XyzTuple(float(xyz[0]), float(xyz[1]), float(xyz[2]))


def xyz2irc(coord_xyz, origin_xyz, vx_size_xyz, direction_a) -> IrcTuple:
    irc = xyz2irc_array(coord_xyz, origin_xyz, vx_size_xyz, direction_a)[0]
    return IrcTuple(int(irc[0]), int(irc[1]), int(irc[2]))
