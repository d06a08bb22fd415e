"""What segmentation reads (the book's ch. 13), cut once from the CTs and kept in the cache
beside the chunk store, so an epoch never opens a CT:

- **training windows** (``cache_dir/seg-windows-7x96x96/<uid>.chunks``): per nodule of a
  series, the 7 slices × 96 × 96 window round its centre (shifted inside the volume near an
  edge, as chunks are) and, as an 8th plane, the nodule mask of the window's middle slice
  (0/1). A chunk store (luna_core.data.chunkstore) of (8, 96, 96) chunks whose centres are the
  series' nodules: one positioned read a sample, rebuilt when the CT or the nodules change.
- **validation volumes** (``cache_dir/seg-volumes/<uid>.vol``): a validation series' whole
  HU volume and its mask, for whole-slice validation: a slice and its 3 context slices each
  side are one positioned read (the ends repeated at the volume's ends), its mask one more.
  The header lists the slices that hold mask pixels, so the validation set is known without
  reading the masks. Same layout as a chunk store file: a 16-byte prefix (``LUNASEGV``,
  format, header length), a JSON header, zero padding to 4,096 bytes, the int16 HU volume,
  then the uint8 mask volume.

Masks follow luna_core.data.masks (the book's rule).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write

from .chunkstore import ChunkStore, _stat_dict, centres_digest
from .csvread import check_series_uid
from .ct import Ct, check_voxel_file, cut_chunk, find_mhd, raw_path_of, read_mhd_header
from .geometry import xyz2irc_array
from .masks import build_mask

log = logging.getLogger(__name__)

CONTEXT_SLICES = 3                        # each side of the slice: 7 channels
WINDOW_IRC = (2 * CONTEXT_SLICES + 1, 96, 96)
WINDOW_STORE_IRC = (WINDOW_IRC[0] + 1, *WINDOW_IRC[1:])   # + the mask plane
VOLUME_FORMAT = 2
_MAGIC = b"LUNASEGV"
_PREFIX = struct.Struct("<8sII")
_ALIGN = 4096


class SegWindowStore(ChunkStore):
    """The training windows: a chunk store of (8, 96, 96) chunks round each nodule (7 HU
    planes and the middle slice's mask)."""

    def __init__(self, data_dir, cache_dir) -> None:
        super().__init__(data_dir, cache_dir, WINDOW_STORE_IRC)
        self.dir = Path(cache_dir) / "seg-windows-{}x{}x{}".format(*WINDOW_IRC)

    @property
    def cut_width(self) -> tuple[int, int, int]:
        return WINDOW_IRC

    def cut_chunks(self, vol: np.ndarray, center_irc: np.ndarray, starts: np.ndarray):
        mask = build_mask(vol, center_irc).astype(np.int16)   # the centres are the nodules
        middle = (1, *WINDOW_IRC[1:])
        for s in starts.tolist():
            hu = cut_chunk(vol, s, WINDOW_IRC)
            label = cut_chunk(mask, (s[0] + CONTEXT_SLICES, s[1], s[2]), middle, pad_value=0)
            yield np.concatenate([hu, label])


class SeriesVolume(NamedTuple):
    """What a reader needs of one validation volume file (picklable, small)."""
    series_uid: str
    path: str
    data_offset: int
    shape_irc: tuple[int, int, int]
    mask_slices: tuple[int, ...]           # slices holding mask pixels
    empty_nodules: int                     # nodules whose mask is empty
    vx_size_xyz: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def slice_nbytes(self) -> int:
        return self.shape_irc[1] * self.shape_irc[2]

    @property
    def mask_offset(self) -> int:
        return self.data_offset + 2 * self.shape_irc[0] * self.slice_nbytes


class SegVolumeStore:
    """The validation volumes (see the module's docstring). Picklable: paths only."""

    def __init__(self, data_dir, cache_dir) -> None:
        self.data_dir = Path(data_dir)
        self.dir = Path(cache_dir) / "seg-volumes"

    def path(self, series_uid: str) -> Path:
        check_series_uid(series_uid, path=self.dir)
        return self.dir / f"{series_uid}.vol"

    def _check(self, series_uid: str, digest: str, source: dict | None) -> SeriesVolume | None:
        path = self.path(series_uid)
        try:
            with open(path, "rb") as f:
                magic, fmt, length = _PREFIX.unpack(f.read(_PREFIX.size))
                if magic != _MAGIC or fmt != VOLUME_FORMAT:
                    return None
                meta = json.loads(f.read(length))
            offset = -(-(_PREFIX.size + length) // _ALIGN) * _ALIGN
            shape = tuple(int(v) for v in meta["shape_irc"])
            if meta["series_uid"] != series_uid or meta["nodules_sha256"] != digest:
                return None
            if source is not None and meta["source"] != source:
                return None
            if path.stat().st_size != offset + 3 * int(np.prod(shape)):
                return None
            return SeriesVolume(series_uid, str(path), offset, shape,
                                tuple(int(k) for k in meta["mask_slices"]),
                                int(meta["empty_nodules"]),
                                tuple(float(v) for v in meta["vx_size_xyz"]))
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None

    def _source(self, series_uid: str):
        mhd = find_mhd(self.data_dir, series_uid, required=False)
        if mhd is None:
            return None, None
        return mhd, {"mhd": _stat_dict(mhd), "raw": _stat_dict(raw_path_of(
            mhd, read_mhd_header(mhd)))}

    def state(self, series_uid: str, nodules_xyz) -> str:
        """'ready' or 'missing' (absent, stale or cut short): read only."""
        nodules_xyz = np.asarray(nodules_xyz, dtype=np.float64).reshape(-1, 3)
        _mhd, source = self._source(series_uid)
        digest = centres_digest(nodules_xyz, (0, 0, 0))
        return "ready" if self._check(series_uid, digest, source) is not None else "missing"

    def ensure(self, series_uid: str, nodules_xyz: np.ndarray) -> SeriesVolume:
        """The series' volume file, built first when missing, stale or cut short."""
        nodules_xyz = np.asarray(nodules_xyz, dtype=np.float64).reshape(-1, 3)
        digest = centres_digest(nodules_xyz, (0, 0, 0))
        mhd, source = self._source(series_uid)
        vol = self._check(series_uid, digest, source)
        if vol is not None:
            return vol
        if self.path(series_uid).exists():
            log.info("%s: stale or damaged (its CT or nodules changed, or it was cut short): "
                     "cutting it again", self.path(series_uid))
        if mhd is None:
            raise LunaInputError(f"series {series_uid} not found under subset*/ and its "
                                 "validation volume is missing or stale", path=self.data_dir)
        return self._build(series_uid, nodules_xyz, digest, mhd, source)

    def _build(self, series_uid, nodules_xyz, digest, mhd, source) -> SeriesVolume:
        check_voxel_file(mhd)
        ct = Ct.read(mhd, series_uid)
        shape = ct.hu_a.shape
        irc = xyz2irc_array(nodules_xyz, ct.origin_xyz, ct.vx_size_xyz, ct.direction_a)
        mask = build_mask(ct.hu_a, irc)
        inside = np.all((irc >= 0) & (irc < np.asarray(shape)), axis=1)
        empty = sum(1 for c, ok in zip(irc.tolist(), inside.tolist(), strict=True)
                    if ok and not mask[int(c[0]), int(c[1]), int(c[2])])
        meta = {"series_uid": series_uid, "shape_irc": list(shape), "source": source,
                "vx_size_xyz": list(ct.vx_size_xyz),
                "nodules_sha256": digest, "empty_nodules": empty,
                "mask_slices": np.flatnonzero(mask.any(axis=(1, 2))).tolist()}
        body = json.dumps(meta, separators=(",", ":")).encode()
        offset = -(-(_PREFIX.size + len(body)) // _ALIGN) * _ALIGN
        head = _PREFIX.pack(_MAGIC, VOLUME_FORMAT, len(body)) + body
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(series_uid)) as f:
            f.write(head + bytes(offset - len(head)))
            f.write(np.ascontiguousarray(ct.hu_a, dtype="<i2"))
            f.write(np.ascontiguousarray(mask, dtype=np.uint8))
        vol = self._check(series_uid, digest, source)
        if vol is None:
            raise LunaInputError("CT changed while its validation volume was written",
                                 path=mhd)
        return vol


def read_slice(vol: SeriesVolume, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Slice ``k`` with its context: ((7, H, W) int16, the index clamped at the volume's
    ends) and its mask ((1, H, W) uint8); two positioned reads."""
    n, h, w = vol.shape_irc
    if not 0 <= k < n:
        raise IndexError(f"slice {k} outside {vol.series_uid} ({n} slices)")
    lo, hi = max(0, k - CONTEXT_SLICES), min(n, k + CONTEXT_SLICES + 1)
    block = np.empty((hi - lo, h, w), dtype="<i2")
    mask = np.empty((1, h, w), dtype=np.uint8)
    fd = os.open(vol.path, os.O_RDONLY)
    try:
        _read_exactly(fd, block, vol.data_offset + 2 * lo * vol.slice_nbytes, vol.path)
        _read_exactly(fd, mask, vol.mask_offset + k * vol.slice_nbytes, vol.path)
    finally:
        os.close(fd)
    rows = np.clip(np.arange(k - CONTEXT_SLICES, k + CONTEXT_SLICES + 1), 0, n - 1) - lo
    return block[rows], mask


def _read_exactly(fd: int, out: np.ndarray, offset: int, path: str) -> None:
    got = os.preadv(fd, [out], offset) if hasattr(os, "preadv") else _pread_into(fd, out, offset)
    if got != out.nbytes:
        raise LunaInputError("validation volume ends early (truncated since it was "
                             "opened?): delete it to rebuild it", path=path)


def _pread_into(fd: int, out: np.ndarray, offset: int) -> int:
    data = os.pread(fd, out.nbytes, offset)
    memoryview(out).cast("B")[:len(data)] = data
    return len(data)
