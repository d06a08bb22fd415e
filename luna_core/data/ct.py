"""CT volumes: reading .mhd/.raw with SimpleITK, and cutting candidate chunks.

``Ct`` is one whole CT in memory (int16 Hounsfield units clipped to [-1000, 1000], axes (index,
row, col)) with its geometry: what the chunk store is built from, and what tools and tests use
to cut a chunk straight from the source (``Ct.get_raw_candidate``, the book's
``getRawCandidate``). Training reads chunks from the chunk store (``chunkstore``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from luna_core.errors import LunaInputError

from .csvread import check_series_uid
from .geometry import IrcTuple, XyzTuple, irc2xyz, xyz2irc

HU_MIN = -1000
HU_MAX = 1000
PAD_HU = -1000
CHUNK_WIDTH_IRC = (32, 48, 48)
_MET_ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
    "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


# --------------------------------------------------------------------------- .mhd header

def read_mhd_header(mhd_path) -> dict[str, str]:
    """The ``Key = value`` fields of a MetaImage header (up to ElementDataFile)."""
    mhd_path = Path(mhd_path)
    try:
        with open(mhd_path, "rb") as f:
            head = f.read(1 << 16)
    except FileNotFoundError:
        raise LunaInputError("CT header (.mhd) not found", path=mhd_path) from None
    except OSError as e:
        raise LunaInputError(f"cannot read CT header: {e.strerror}", path=mhd_path) from None
    fields: dict[str, str] = {}
    for raw_line in head.split(b"\n"):
        line = raw_line.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "DimSize" not in fields or "ElementType" not in fields:
        raise LunaInputError("not a MetaImage header (no DimSize / ElementType)", path=mhd_path)
    return fields


def raw_path_of(mhd_path, fields: dict[str, str]) -> Path | None:
    """The separate voxel file a header names, or None (LOCAL data, file lists)."""
    name = fields.get("ElementDataFile", "")
    if not name or name.upper() in ("LOCAL", "LIST") or "%" in name or " " in name:
        return None
    return Path(mhd_path).parent / name


def check_header(mhd_path, fields: dict[str, str]) -> None:
    """Refuse a header that cannot be a CT's: not 3-D (NDims, three positive DimSize), an
    element type MetaImage does not have, or no ElementDataFile (where the voxels are)."""
    dims = fields.get("DimSize", "").split()
    if fields.get("NDims", "3").strip() != "3" or len(dims) != 3 \
            or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise LunaInputError(f"not a 3-D CT header (NDims {fields.get('NDims', '-')!r:.12}, "
                             f"DimSize {fields.get('DimSize', '-')!r:.40})", path=mhd_path)
    element = (fields.get("ElementType", "").split() or [""])[0]
    if element not in _MET_ELEMENT_BYTES:
        raise LunaInputError(f"unknown ElementType {element!r:.40} in CT header",
                             path=mhd_path)
    if not fields.get("ElementDataFile"):
        raise LunaInputError("CT header names no ElementDataFile (where its voxels are)",
                             path=mhd_path)


def check_voxel_file(mhd_path, fields: dict[str, str] | None = None) -> Path | None:
    """Refuse a header that cannot be a CT's, a missing voxel file, or one shorter than
    DimSize x element size says."""
    mhd_path = Path(mhd_path)
    if fields is None:
        fields = read_mhd_header(mhd_path)
    check_header(mhd_path, fields)
    raw = raw_path_of(mhd_path, fields)
    if raw is None:
        return None
    try:
        size = raw.stat().st_size
    except FileNotFoundError:
        raise LunaInputError(f"voxel file named by {mhd_path.name} is missing", path=raw) from None
    if fields.get("CompressedData", "False").strip().lower() == "true":
        return raw
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        elem = _MET_ELEMENT_BYTES[fields["ElementType"].split()[0]]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
    except (ValueError, KeyError, IndexError):
        raise LunaInputError("unreadable DimSize / ElementType / HeaderSize in CT header",
                             path=mhd_path) from None
    expected = math.prod(dims) * elem * channels + max(header_size, 0)
    if size < expected:
        raise LunaInputError(f"voxel file is {size} bytes but {mhd_path.name} says "
                             f"{'x'.join(map(str, dims))} x {elem} bytes = {expected}: "
                             "truncated download?", path=raw)
    return raw


def _one_line(msg: str, limit: int = 200) -> str:
    """A SimpleITK/ITK exception text as one short line (without source file locations)."""
    text = str(msg)
    if "ITK ERROR:" in text:
        text = text.split("ITK ERROR:", 1)[1]
        head, sep, rest = text.partition("): ")
        if sep and "(" in head:
            text = rest
    text = " ".join(ln.strip() for ln in text.splitlines() if ln.strip()) or "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- chunk windows

def window_starts_array(center_irc, shape_irc, width_irc) -> tuple[np.ndarray, np.ndarray]:
    """Starts of ``width_irc`` windows around N centres (N, 3), shifted inside the volume near
    an edge (like the book); where the volume is smaller than the window, the window holds
    the whole volume (the rest is padding). Also returns which windows need padding (N,)."""
    irc = np.asarray(center_irc, dtype=np.int64).reshape(-1, 3)
    shape = np.asarray(shape_irc, dtype=np.int64)
    width = np.asarray(width_irc, dtype=np.int64)
    starts = np.clip(irc - width // 2, np.minimum(0, shape - width), np.maximum(0, shape - width))
    padded = np.any((starts < 0) | (starts + width > shape), axis=1)
    return starts, padded


def window_starts(center_irc, shape_irc, width_irc) -> tuple[int, int, int]:
    """``window_starts_array`` for one centre."""
    starts, _ = window_starts_array(center_irc, shape_irc, width_irc)
    return tuple(int(v) for v in starts[0])


def needs_padding(starts, shape_irc, width_irc) -> bool:
    return any(s < 0 or s + w > n for s, n, w in zip(starts, shape_irc, width_irc))


def cut_chunk(vol: np.ndarray, starts, width_irc, pad_value=PAD_HU) -> np.ndarray:
    """``vol[starts : starts + width]``, padded with ``pad_value`` where the window leaves the
    volume. Returns a view when no padding is needed."""
    i0, r0, c0 = starts
    wi, wr, wc = width_irc
    if not needs_padding(starts, vol.shape, width_irc):
        return vol[i0:i0 + wi, r0:r0 + wr, c0:c0 + wc]
    out = np.full(tuple(width_irc), pad_value, dtype=vol.dtype)
    src, dst = [], []
    for s, n, w in zip(starts, vol.shape, width_irc):
        a, b = max(s, 0), min(s + w, n)
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def outside_error(series_uid, center_xyz, center_irc, shape_irc, candidates_file=None):
    return LunaInputError(
        f"candidate centre {tuple(round(float(v), 3) for v in center_xyz)} is voxel "
        f"{tuple(int(v) for v in center_irc)}, outside series {series_uid} "
        f"(shape {tuple(shape_irc)})", path=candidates_file)


# --------------------------------------------------------------------------- Ct

class Ct:
    """One CT: ``hu_a`` int16 (index, row, col) clipped to [-1000, 1000], plus geometry."""

    def __init__(self, hu_a, origin_xyz, vx_size_xyz, direction_a, series_uid: str):
        self.hu_a = hu_a
        self.origin_xyz = XyzTuple(*map(float, origin_xyz))
        self.vx_size_xyz = XyzTuple(*map(float, vx_size_xyz))
        self.direction_a = np.asarray(direction_a, dtype=np.float64).reshape(3, 3)
        self.series_uid = series_uid

    @classmethod
    def read(cls, mhd_path, series_uid: str | None = None) -> Ct:
        import SimpleITK as sitk

        mhd_path = Path(mhd_path)
        fields = read_mhd_header(mhd_path)
        check_voxel_file(mhd_path, fields)
        try:
            img = sitk.ReadImage(str(mhd_path))
        except RuntimeError as e:
            why = _one_line(e)
            if why.startswith("File cannot be read"):   # ITK's words for a bad header
                why = "SimpleITK cannot parse the MetaImage header"
            raise LunaInputError(f"cannot read CT: {why}", path=mhd_path) from None
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise LunaInputError("not a 3-D single-channel CT", path=mhd_path)
        view = sitk.GetArrayViewFromImage(img)
        if view.dtype == np.int16:
            hu_a = np.clip(view, HU_MIN, HU_MAX, out=np.empty(view.shape, np.int16))
        else:
            hu_a = np.rint(np.clip(view.astype(np.float64), HU_MIN, HU_MAX)).astype(np.int16)
        direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
        uid = series_uid if series_uid is not None else mhd_path.stem
        ct = cls(hu_a, img.GetOrigin(), img.GetSpacing(), direction, uid)
        del view, img
        return ct

    @classmethod
    def load(cls, series_uid: str, data_dir) -> Ct:
        return cls.read(find_mhd(data_dir, series_uid), series_uid)

    def xyz2irc(self, center_xyz) -> IrcTuple:
        return xyz2irc(center_xyz, self.origin_xyz, self.vx_size_xyz, self.direction_a)

    def irc2xyz(self, center_irc) -> XyzTuple:
        return irc2xyz(center_irc, self.origin_xyz, self.vx_size_xyz, self.direction_a)

    def get_raw_candidate(self, center_xyz, width_irc=CHUNK_WIDTH_IRC, candidates_file=None):
        center_irc = self.xyz2irc(center_xyz)
        shape = self.hu_a.shape
        if not all(0 <= c < n for c, n in zip(center_irc, shape)):
            raise outside_error(self.series_uid, center_xyz, center_irc, shape, candidates_file)
        starts = window_starts(center_irc, shape, width_irc)
        return np.array(cut_chunk(self.hu_a, starts, width_irc)), center_irc


def find_mhd(data_dir, series_uid: str, required: bool = True) -> Path | None:
    """``data_dir/subset*/<uid>.mhd``."""
    data_dir = Path(data_dir)
    check_series_uid(series_uid, path=data_dir)
    for sub in sorted(data_dir.glob("subset*")):
        p = sub / f"{series_uid}.mhd"
        if p.is_file():
            return p
    if required:
        raise LunaInputError(f"series {series_uid} not found under subset*/", path=data_dir)
    return None
