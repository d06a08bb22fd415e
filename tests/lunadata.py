"""Helpers for the data-path tests: tiny CT volumes (.mhd/.raw) and tiny LUNA16 CSVs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
FLIP_XY = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
# Rotation about z by 90 degrees, then z flipped (row-major): orthonormal but not symmetric
# (direction != direction.T), so a transposed direction or an x/y swap gives other voxels.
ROT90Z_FLIPZ = (0, -1, 0, 1, 0, 0, 0, 0, -1)

UID_A = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000001"
UID_B = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000002"
UID_C = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000003"


def ramp_volume(shape_irc) -> np.ndarray:
    """int16 volume whose voxel value encodes its position (within [-1000, 1000])."""
    i, r, c = np.indices(shape_irc)
    return ((i * 37 + r * 11 + c * 3) % 1900 - 950).astype(np.int16)


def unique_volume(shape_irc) -> np.ndarray:
    """int16 volume whose voxels all differ: value = -1000 + flat (index, row, col) position
    (so at most 2001 voxels, to stay within [-1000, 1000])."""
    n = int(np.prod(shape_irc))
    assert n <= 2001, shape_irc
    return (np.arange(n) - 1000).astype(np.int16).reshape(shape_irc)


def write_ct(data_dir, uid, hu_a=None, shape_irc=(20, 30, 30), origin=(-10.0, -20.0, -30.0),
             spacing=(0.75, 0.75, 2.5), direction=IDENTITY, subset="subset0") -> Path:
    """Write ``data_dir/<subset>/<uid>.mhd`` + ``.raw``; returns the .mhd path."""
    if hu_a is None:
        hu_a = ramp_volume(shape_irc)
    hu_a = np.asarray(hu_a, dtype=np.int16)
    img = sitk.GetImageFromArray(hu_a)          # array (z, y, x) = (index, row, col)
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in direction))
    d = Path(data_dir) / subset
    d.mkdir(parents=True, exist_ok=True)
    mhd = d / f"{uid}.mhd"
    sitk.WriteImage(img, str(mhd), useCompression=False)
    return mhd


def edit_mhd(mhd, **fields) -> Path:
    """Rewrite ``Key = value`` fields of a .mhd header (e.g. ``Offset="1 2 3"``) and move its
    mtime one second on, so that the change is seen whatever the clock's resolution."""
    mhd = Path(mhd)
    lines = mhd.read_text().splitlines()
    for key, value in fields.items():
        hits = [k for k, ln in enumerate(lines) if ln.split("=")[0].strip() == key]
        assert len(hits) == 1, (key, lines)
        lines[hits[0]] = f"{key} = {value}"
    st = mhd.stat()
    mhd.write_text("\n".join(lines) + "\n")
    os.utime(mhd, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return mhd


def write_csv(path, header, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_candidates(csv_dir, rows, name="candidates.csv") -> Path:
    """rows: (uid, x, y, z, class)."""
    return write_csv(Path(csv_dir) / name, ["seriesuid", "coordX", "coordY", "coordZ", "class"],
                     rows)


def write_annotations(csv_dir, rows) -> Path:
    """rows: (uid, x, y, z, diameter_mm)."""
    return write_csv(Path(csv_dir) / "annotations.csv",
                     ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], rows)


def center_xyz_of(irc, origin=(-10.0, -20.0, -30.0), spacing=(0.75, 0.75, 2.5),
                  direction=IDENTITY):
    from luna_core.data.geometry import irc2xyz

    return tuple(irc2xyz(irc, origin, spacing, np.reshape(direction, (3, 3))))


def make_dataset_dir(root, n_series=2, per_series=12, shape_irc=(20, 30, 30),
                     nodules_per_series=2):
    """A data dir with ``n_series`` CTs, their candidates (on a grid of voxel centres, the
    first ``nodules_per_series`` of each series class 1) and one annotation per nodule."""
    root = Path(root)
    uids = [UID_A, UID_B, UID_C][:n_series]
    cands, anns = [], []
    rng = np.random.default_rng(0)
    for s, uid in enumerate(uids):
        direction = FLIP_XY if s == 1 else IDENTITY
        write_ct(root, uid, shape_irc=shape_irc, direction=direction, subset=f"subset{s}")
        for k in range(per_series):
            irc = tuple(int(rng.integers(0, n)) for n in shape_irc)
            xyz = center_xyz_of(irc, direction=direction)
            is_nod = int(k < nodules_per_series)
            cands.append((uid, *xyz, is_nod))
            if is_nod:
                anns.append((uid, *xyz, 4.0 + k))
    write_candidates(root, cands)
    write_annotations(root, anns)
    return root, uids, cands
