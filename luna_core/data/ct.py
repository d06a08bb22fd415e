"""CT volumes: reading .mhd/.raw, the on-disk .npy cache, and cutting candidate chunks.

Each CT is converted once into ``cache_dir/ct/<uid>.npy`` (int16 Hounsfield units clipped to
[-1000, 1000], axes (index, row, col)) plus ``cache_dir/ct/<uid>.json`` (geometry and the size
and mtime of the source .mhd/.raw, so that a changed source is converted again). Both files are
written under a temporary name and renamed into place, the .json last: a .json means a complete
.npy. Chunks are cut from a read-only memory map of the .npy; each process keeps at most
``MAX_OPEN_VOLUMES`` maps open.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import math
import mmap
import multiprocessing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write

from .candidates import check_series_uid
from .geometry import IrcTuple, XyzTuple, irc2xyz, xyz2irc, xyz2irc_array

HU_MIN = -1000
HU_MAX = 1000
PAD_HU = -1000
CHUNK_WIDTH_IRC = (32, 48, 48)
CACHE_FORMAT = 1
MAX_OPEN_VOLUMES = 1024  # full LUNA16 has 888 series: keep them all mapped when allowed
_fd_budget: int | None = None


def _max_open_volumes() -> int:
    """How many maps this process keeps. Before Python 3.13 each map holds a file
    descriptor, so the soft RLIMIT_NOFILE is raised to the hard limit (once) and half of it
    may go to maps."""
    global _fd_budget
    if _fd_budget is None:
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if hard == resource.RLIM_INFINITY or hard > soft:
                target = 65536 if hard == resource.RLIM_INFINITY else hard
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            _fd_budget = max(16, soft // 2)
        except (ImportError, ValueError, OSError):
            _fd_budget = 64
    return min(MAX_OPEN_VOLUMES, _fd_budget)

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


def check_voxel_file(mhd_path, fields: dict[str, str] | None = None) -> Path | None:
    """Refuse a missing voxel file, or one shorter than DimSize x element size says."""
    mhd_path = Path(mhd_path)
    if fields is None:
        fields = read_mhd_header(mhd_path)
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


# --------------------------------------------------------------------------- cache

class CtGeometry(NamedTuple):
    series_uid: str
    shape_irc: tuple[int, int, int]
    origin_xyz: XyzTuple
    vx_size_xyz: XyzTuple
    direction: tuple[float, ...]       # 9 values, row-major
    npy_path: str
    data_offset: int
    npy_id: tuple[int, int]            # (st_ino, st_mtime_ns) of the .npy, for the map cache

    @property
    def direction_a(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def xyz2irc(self, center_xyz) -> IrcTuple:
        return xyz2irc(center_xyz, self.origin_xyz, self.vx_size_xyz, self.direction_a)

    def xyz2irc_array(self, xyz_a) -> np.ndarray:
        return xyz2irc_array(xyz_a, self.origin_xyz, self.vx_size_xyz, self.direction_a)


_VOLUMES: collections.OrderedDict = collections.OrderedDict()


def open_volume(geom: CtGeometry) -> np.ndarray:
    """Read-only (index, row, col) int16 array over the cached .npy (memory-mapped). At most
    ``MAX_OPEN_VOLUMES`` maps stay open per process (least recently used are dropped)."""
    key = (geom.npy_path, geom.npy_id)
    vol = _VOLUMES.get(key)
    if vol is not None:
        _VOLUMES.move_to_end(key)
        return vol
    with open(geom.npy_path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    vol = np.frombuffer(mm, dtype="<i2", count=math.prod(geom.shape_irc),
                        offset=geom.data_offset).reshape(geom.shape_irc)
    _VOLUMES[key] = vol
    while len(_VOLUMES) > _max_open_volumes():
        _VOLUMES.popitem(last=False)
    return vol


def close_volumes() -> None:
    _VOLUMES.clear()


def _stat_dict(p: Path | None):
    if p is None:
        return None
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class CtCache:
    """Converts CTs once into ``cache_dir/ct/<uid>.npy`` + ``.json`` and cuts chunks.

    Picklable (DataLoader workers, fork or spawn): it holds only paths and geometry; open
    memory maps live in a per-process table.
    """

    def __init__(self, data_dir, cache_dir):
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.ct_dir = self.cache_dir / "ct"
        self._geometry: dict[str, CtGeometry] = {}

    def __repr__(self) -> str:
        return f"CtCache({str(self.data_dir)!r}, {str(self.cache_dir)!r})"

    def paths(self, series_uid: str) -> tuple[Path, Path]:
        check_series_uid(series_uid, path=self.cache_dir)
        return self.ct_dir / f"{series_uid}.npy", self.ct_dir / f"{series_uid}.json"

    def _sources(self, series_uid: str):
        mhd = find_mhd(self.data_dir, series_uid, required=False)
        if mhd is None:
            return None, None, None
        fields = read_mhd_header(mhd)
        return mhd, fields, raw_path_of(mhd, fields)

    def _fresh(self, series_uid: str, mhd: Path | None, raw: Path | None) -> CtGeometry | None:
        npy, js = self.paths(series_uid)
        try:
            with open(js, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("format") != CACHE_FORMAT or meta.get("series_uid") != series_uid:
                return None
            if mhd is not None:
                src = meta.get("source", {})
                if src.get("mhd") != _stat_dict(mhd) or src.get("raw") != _stat_dict(raw):
                    return None
            shape = tuple(int(v) for v in meta["shape_irc"])
            offset = int(meta["data_offset"])
            st = npy.stat()
            if st.st_size != offset + 2 * math.prod(shape):
                return None
            return CtGeometry(series_uid, shape, XyzTuple(*meta["origin_xyz"]),
                              XyzTuple(*meta["vx_size_xyz"]),
                              tuple(float(v) for v in meta["direction"]), str(npy), offset,
                              (st.st_ino, st.st_mtime_ns))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_fresh(self, series_uid: str) -> bool:
        mhd, _fields, raw = self._sources(series_uid)
        return self._fresh(series_uid, mhd, raw) is not None

    def ensure(self, series_uid: str, recheck: bool = False) -> CtGeometry:
        """Geometry of the cached volume, converting the CT first if missing or stale.

        The source files are checked once per series and CtCache object (``recheck=True``
        checks again)."""
        geom = None if recheck else self._geometry.get(series_uid)
        if geom is not None:
            return geom
        npy, js = self.paths(series_uid)
        mhd, fields, raw = self._sources(series_uid)
        geom = self._fresh(series_uid, mhd, raw)
        if geom is None:
            if mhd is None:
                raise LunaInputError(f"series {series_uid} not found under subset*/ (and not "
                                     f"in the cache {self.ct_dir})", path=self.data_dir)
            geom = self._build(series_uid, mhd, raw)
        self._geometry[series_uid] = geom
        return geom

    def _build(self, series_uid: str, mhd: Path, raw: Path | None) -> CtGeometry:
        npy, js = self.paths(series_uid)
        check_voxel_file(mhd)       # a clear error for a missing or short .raw
        # stat before reading: a source changed while being read is converted again later
        src = {"mhd": _stat_dict(mhd), "raw": _stat_dict(raw)}
        ct = Ct.read(mhd, series_uid)   # raises LunaInputError before anything is written
        self.ct_dir.mkdir(parents=True, exist_ok=True)
        hu_a = np.ascontiguousarray(ct.hu_a, dtype="<i2")
        offset = [0]

        def write_npy(f):
            np.lib.format.write_array(f, hu_a, allow_pickle=False)
            offset[0] = f.tell() - hu_a.nbytes

        try:
            js.unlink()             # a stale .json must never describe the new .npy
        except FileNotFoundError:
            pass
        with atomic_write(npy) as f:
            write_npy(f)
        meta = {
            "format": CACHE_FORMAT,
            "series_uid": series_uid,
            "shape_irc": list(hu_a.shape),
            "dtype": "<i2",
            "hu_clip": [HU_MIN, HU_MAX],
            "data_offset": offset[0],
            "origin_xyz": list(ct.origin_xyz),
            "vx_size_xyz": list(ct.vx_size_xyz),
            "direction": [float(v) for v in ct.direction_a.ravel()],
            "source": src,
        }
        body = json.dumps(meta, indent=1).encode()
        with atomic_write(js) as f:
            f.write(body)
        st = npy.stat()
        return CtGeometry(series_uid, tuple(hu_a.shape), ct.origin_xyz, ct.vx_size_xyz,
                          tuple(meta["direction"]), str(npy), offset[0],
                          (st.st_ino, st.st_mtime_ns))

    def volume(self, series_uid: str) -> np.ndarray:
        return open_volume(self.ensure(series_uid))

    def get_chunk(self, series_uid: str, center_xyz, width_irc=CHUNK_WIDTH_IRC,
                  candidates_file=None, dtype=np.int16):
        """(chunk of ``width_irc`` voxels as a fresh ``dtype`` array, centre IrcTuple)."""
        geom = self.ensure(series_uid)
        center_irc = geom.xyz2irc(center_xyz)
        shape = geom.shape_irc
        if not all(0 <= c < n for c, n in zip(center_irc, shape)):
            raise outside_error(series_uid, center_xyz, center_irc, shape, candidates_file)
        starts = window_starts(center_irc, shape, width_irc)
        chunk = cut_chunk(open_volume(geom), starts, width_irc)
        return chunk.astype(dtype), center_irc


# --------------------------------------------------------------------------- prepare

def _build_in_worker(data_dir: str, cache_dir: str, series_uid: str):
    try:
        CtCache(data_dir, cache_dir).ensure(series_uid)
    except LunaInputError as e:
        return series_uid, (e.message, e.path, e.line)
    return series_uid, None


def prepare_cache(data_dir, cache_dir, series_uids: Iterable[str], num_workers: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Convert every listed series (each once) that is missing or stale in the cache.

    ``num_workers > 1`` converts in a process pool (spawned processes). ``progress(done,
    total)`` is called in the calling process. Returns how many series were converted.
    """
    uids = list(dict.fromkeys(series_uids))
    cache = CtCache(data_dir, cache_dir)
    todo = [u for u in uids if not cache.is_fresh(u)]
    total = len(uids)
    done = total - len(todo)
    if progress is not None:
        progress(done, total)
    if not todo:
        return 0
    if num_workers <= 1 or len(todo) == 1:
        for uid in todo:
            cache.ensure(uid)
            done += 1
            if progress is not None:
                progress(done, total)
        return len(todo)
    ctx = multiprocessing.get_context("spawn")
    workers = min(num_workers, len(todo))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(_build_in_worker, str(data_dir), str(cache_dir), u)
                   for u in todo]
        try:
            for fut in concurrent.futures.as_completed(futures):
                _uid, err = fut.result()
                if err is not None:
                    message, path, line = err
                    raise LunaInputError(message, path=path, line=line)
                done += 1
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return len(todo)
