"""The chunk store: every candidate's chunk, stored contiguously, read with one positioned read.

One file per series, ``cache_dir/chunks-32x48x48/<uid>.chunks`` (the chunk width in the folder
name, so stores of two widths can sit side by side):

- 16 bytes: ``LUNACHNK``, the store format (u32), the header's length (u32);
- a JSON header: geometry of the CT, the chunk width, the size and mtime of the source .mhd and
  .raw, the sha256 of the series' candidate centres, and each chunk's centre irc;
- zero padding to 4,096 bytes, then the chunks: int16 HU clipped to [-1000, 1000], (index, row,
  col) C order, shifted inside the volume near an edge and padded with -1000 where the volume is
  smaller, exactly like ``cut_chunk`` on the whole CT. A (32, 48, 48) chunk is 147,456 bytes,
  36 pages: page aligned.

A series' chunks are its candidates' distinct centres in sorted (x, y, z) order, so anyone who
has the candidate list knows where a candidate's chunk is (``group_centres``) without reading an
index. A file is written under a temporary name and renamed into place; it is rebuilt when the
source files, the series' centres, the width or the format change. Reading a chunk is one
``preadv`` of exactly its bytes from a descriptor opened with ``POSIX_FADV_RANDOM`` (no read-
around): a store larger than memory costs one chunk of storage reads per sample, and nothing is
mapped, so a reader's resident memory stays flat.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import multiprocessing
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from luna_core.errors import LunaInputError
from luna_core.fsutil import atomic_write, remove_orphaned_temps

from .csvread import check_series_uid
from .ct import (
    CHUNK_WIDTH_IRC,
    HU_MAX,
    HU_MIN,
    PAD_HU,
    Ct,
    check_voxel_file,
    cut_chunk,
    find_mhd,
    outside_error,
    raw_path_of,
    read_mhd_header,
    window_starts_array,
)
from .geometry import XyzTuple, xyz2irc_array

log = logging.getLogger(__name__)

STORE_FORMAT = 1
MAGIC = b"LUNACHNK"
_PREFIX = struct.Struct("<8sII")
ALIGN = 4096
MAX_OPEN_FILES = 1024      # full LUNA16 has 888 series: keep them all open when allowed
_fd_budget: int | None = None


def store_dir(cache_dir, width_irc=CHUNK_WIDTH_IRC) -> Path:
    return Path(cache_dir) / ("chunks-" + "x".join(str(int(w)) for w in width_irc))


# --------------------------------------------------------------------------- centres

def group_centres(series_idx: np.ndarray, center_xyz: np.ndarray, n_series: int):
    """Each series' distinct centres, sorted, and where each candidate's chunk is.

    ``series_idx`` (N,) numbers the series 0..n_series-1, ``center_xyz`` (N, 3) float64.
    Returns (centres (M, 3) float64, offsets (n_series + 1,), chunk_no (N,)): series s owns
    ``centres[offsets[s]:offsets[s + 1]]`` and candidate i is chunk ``chunk_no[i]`` of its
    series. One vectorised sort: ~0.2 s for LUNA16's 551,065 candidates."""
    series_idx = np.asarray(series_idx, dtype=np.int64)
    xyz = np.asarray(center_xyz, dtype=np.float64).reshape(-1, 3)
    n = len(series_idx)
    order = np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0], series_idx))
    s_sorted, x_sorted = series_idx[order], xyz[order]
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (s_sorted[1:] != s_sorted[:-1]) | np.any(x_sorted[1:] != x_sorted[:-1], axis=1)
    unique_no = np.cumsum(new) - 1
    centres = x_sorted[new]
    offsets = np.searchsorted(s_sorted[new], np.arange(n_series + 1)).astype(np.int64)
    chunk_no = np.empty(n, dtype=np.int64)
    chunk_no[order] = unique_no
    chunk_no -= offsets[series_idx]
    return centres, offsets, chunk_no


def centres_digest(centres: np.ndarray, width_irc) -> str:
    h = hashlib.sha256(b"luna-chunk-centres-v1\n")
    h.update(np.asarray(width_irc, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(centres, dtype="<f8").tobytes())
    return h.hexdigest()


def series_centres(candidates) -> dict[str, np.ndarray]:
    """{series uid: its distinct centres, sorted} for a candidate list."""
    uid_index: dict[str, int] = {}
    idx = np.fromiter((uid_index.setdefault(c.series_uid, len(uid_index)) for c in candidates),
                      dtype=np.int64, count=len(candidates))
    xyz = np.array([c.center_xyz for c in candidates], dtype=np.float64).reshape(-1, 3)
    centres, offsets, _ = group_centres(idx, xyz, len(uid_index))
    return {uid: centres[offsets[s]:offsets[s + 1]] for uid, s in uid_index.items()}


# --------------------------------------------------------------------------- one series

class SeriesChunks(NamedTuple):
    """What a reader needs of one series' store file (picklable, small)."""
    series_uid: str
    path: str
    file_id: tuple[int, int, int]      # (st_dev, st_ino, st_mtime_ns): the open-file table key
    data_offset: int
    chunk_nbytes: int
    width_irc: tuple[int, int, int]
    shape_irc: tuple[int, int, int]
    origin_xyz: XyzTuple
    vx_size_xyz: XyzTuple
    direction: tuple[float, ...]       # 9 values, row-major
    center_irc: np.ndarray             # (n_chunks, 3) int64
    digest: str

    @property
    def n_chunks(self) -> int:
        return len(self.center_irc)

    @property
    def direction_a(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def xyz2irc_array(self, xyz_a) -> np.ndarray:
        return xyz2irc_array(xyz_a, self.origin_xyz, self.vx_size_xyz, self.direction_a)


def _stat_dict(p: Path | None):
    if p is None:
        return None
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_header(path) -> tuple[dict | None, int, str]:
    """(header, data offset, '') of a store file, or (None, 0, why): 'missing', 'truncated'
    or 'stale' (another format, not a store file, an unreadable header)."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                return None, 0, "truncated"
            magic, fmt, length = _PREFIX.unpack(prefix)
            if magic != MAGIC or fmt != STORE_FORMAT:
                return None, 0, "stale"
            body = f.read(length)
        if len(body) < length:
            return None, 0, "truncated"
        return json.loads(body), _data_offset(length), ""
    except FileNotFoundError:
        return None, 0, "missing"
    except (OSError, ValueError):
        return None, 0, "stale"


def _data_offset(header_len: int) -> int:
    return -(-(_PREFIX.size + header_len) // ALIGN) * ALIGN


class ChunkStore:
    """Builds and checks the per-series store files of one chunk width.

    Picklable (DataLoader workers): it holds paths only. ``ensure`` returns a
    ``SeriesChunks``; ``read_chunk`` reads with it."""

    def __init__(self, data_dir, cache_dir, width_irc=CHUNK_WIDTH_IRC, candidates_file=None):
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.width_irc = tuple(int(w) for w in width_irc)
        self.dir = store_dir(cache_dir, self.width_irc)
        self.candidates_file = candidates_file
        self.chunk_nbytes = 2 * math.prod(self.width_irc)
        self._known: dict[str, SeriesChunks] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r}, {str(self.dir)!r})"

    @property
    def cut_width(self) -> tuple[int, int, int]:
        """The window cut out of the CT round each centre (a chunk is that window)."""
        return self.width_irc

    def cut_chunks(self, vol: np.ndarray, center_irc: np.ndarray, starts: np.ndarray):
        """Each chunk's int16 array, in the centres' order (``starts``: each window's first
        voxel)."""
        for s in starts.tolist():
            yield cut_chunk(vol, s, self.width_irc)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_known"] = {}
        return state

    def path(self, series_uid: str) -> Path:
        check_series_uid(series_uid, path=self.cache_dir)
        return self.dir / f"{series_uid}.chunks"

    def _sources(self, series_uid: str) -> tuple[Path | None, Path | None]:
        mhd = find_mhd(self.data_dir, series_uid, required=False)
        if mhd is None:
            return None, None
        return mhd, raw_path_of(mhd, read_mhd_header(mhd))

    def _check(self, series_uid: str, digest: str, mhd, raw) -> tuple[SeriesChunks | None, str]:
        """(the series' store if it is usable, else None; why not: '' / 'missing' / 'stale' /
        'truncated')."""
        path = self.path(series_uid)
        meta, offset, why = read_header(path)
        if meta is None:
            return None, why
        try:
            # the digest covers the chunk width as well as the centres
            if meta["series_uid"] != series_uid or meta["centres_sha256"] != digest:
                return None, "stale"
            if mhd is not None and (meta["source"]["mhd"] != _stat_dict(mhd)
                                    or meta["source"]["raw"] != _stat_dict(raw)):
                return None, "stale"
            center_irc = np.array(meta["center_irc"], dtype=np.int64).reshape(-1, 3)
            st = path.stat()
            if st.st_size != offset + len(center_irc) * self.chunk_nbytes:
                return None, "truncated"
            return SeriesChunks(
                series_uid, str(path), (st.st_dev, st.st_ino, st.st_mtime_ns), offset,
                self.chunk_nbytes, self.width_irc, tuple(int(v) for v in meta["shape_irc"]),
                XyzTuple(*meta["origin_xyz"]), XyzTuple(*meta["vx_size_xyz"]),
                tuple(float(v) for v in meta["direction"]), center_irc, digest), ""
        except (OSError, ValueError, KeyError, TypeError):
            return None, "stale"

    def state(self, series_uid: str, centres: np.ndarray) -> str:
        """'ready', 'missing', 'stale' or 'truncated' (read only; for prepcache and checks)."""
        mhd, raw = self._sources(series_uid)
        chunks, why = self._check(series_uid, centres_digest(centres, self.width_irc), mhd, raw)
        return "ready" if chunks is not None else why

    def ensure(self, series_uid: str, centres: np.ndarray, recheck: bool = False) -> SeriesChunks:
        """The series' store, built first if missing or stale. ``centres`` are the series'
        distinct candidate centres, sorted (``group_centres``). The source files are checked
        once per series and ChunkStore object (``recheck=True`` checks again)."""
        known = None if recheck else self._known.get(series_uid)
        if known is not None:
            return known
        digest = centres_digest(centres, self.width_irc)
        mhd, raw = self._sources(series_uid)
        chunks, why = self._check(series_uid, digest, mhd, raw)
        if chunks is None:
            path = self.path(series_uid)
            if mhd is None:
                raise LunaInputError(
                    f"series {series_uid} not found under subset*/ and its chunk store "
                    f"{path} is {why}", path=self.data_dir)
            if why == "truncated":
                log.warning("%s: chunk store file is shorter than its header says "
                            "(truncated copy or full disk?): rebuilding it", path)
            chunks = self.build(series_uid, centres, mhd, raw)
        self._known[series_uid] = chunks
        return chunks

    def build(self, series_uid: str, centres: np.ndarray, mhd: Path, raw: Path | None,
              ) -> SeriesChunks:
        """Read the CT and write every centre's chunk (atomically)."""
        check_voxel_file(mhd)       # a clear error for a missing or short .raw
        # stat before reading: a source changed while being read is built again later
        source = {"mhd": _stat_dict(mhd), "raw": _stat_dict(raw)}
        ct = Ct.read(mhd, series_uid)   # raises LunaInputError before anything is written
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        shape = ct.hu_a.shape
        irc = xyz2irc_array(centres, ct.origin_xyz, ct.vx_size_xyz, ct.direction_a)
        inside = np.all((irc >= 0) & (irc < np.asarray(shape)), axis=1)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise outside_error(series_uid, centres[bad], irc[bad], shape, self.candidates_file)
        starts, _padded = window_starts_array(irc, shape, self.cut_width)
        meta = {
            "series_uid": series_uid,
            "width_irc": list(self.width_irc),
            "dtype": "<i2",
            "hu_clip": [HU_MIN, HU_MAX],
            "pad_hu": PAD_HU,
            "shape_irc": list(shape),
            "origin_xyz": list(ct.origin_xyz),
            "vx_size_xyz": list(ct.vx_size_xyz),
            "direction": [float(v) for v in ct.direction_a.ravel()],
            "source": source,
            "centres_sha256": centres_digest(centres, self.width_irc),
            "center_irc": irc.ravel().tolist(),
        }
        body = json.dumps(meta, separators=(",", ":")).encode()
        offset = _data_offset(len(body))
        head = _PREFIX.pack(MAGIC, STORE_FORMAT, len(body)) + body
        vol = ct.hu_a if ct.hu_a.dtype == np.dtype("<i2") else ct.hu_a.astype("<i2")
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(series_uid)) as f:
            f.write(head + bytes(offset - len(head)))
            for chunk in self.cut_chunks(vol, irc, starts):
                f.write(np.ascontiguousarray(chunk))
        chunks, why = self._check(series_uid, meta["centres_sha256"], mhd, raw)
        if chunks is None:      # only if the source changed while it was read
            raise LunaInputError(f"CT changed while its chunk store was written ({why})",
                                 path=mhd)
        return chunks


# --------------------------------------------------------------------------- reading

_FILES: dict = {}
_HAS_FADVISE = hasattr(os, "posix_fadvise")
_HAS_PREADV = hasattr(os, "preadv")


def _max_open_files() -> int:
    """How many store files this process keeps open: the soft RLIMIT_NOFILE is raised to the
    hard limit (once) and half of it may go to store files."""
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
    return min(MAX_OPEN_FILES, _fd_budget)


def _fd(chunks: SeriesChunks) -> int:
    key = (chunks.path, chunks.file_id)   # a forked worker reuses them: preadv has no position
    fd = _FILES.get(key)
    if fd is not None:      # first opened, first closed: a hit costs one dict lookup
        return fd
    fd = os.open(chunks.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if _HAS_FADVISE:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    _FILES[key] = fd
    while len(_FILES) > _max_open_files():
        os.close(_FILES.pop(next(iter(_FILES))))
    return fd


def close_files() -> None:
    while _FILES:
        os.close(_FILES.popitem()[1])


def read_chunk(chunks: SeriesChunks, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """Chunk ``k`` of a series as int16 (index, row, col), read with one positioned read into
    ``out`` (a C-contiguous int16 array of the chunk's shape) or a new array."""
    if out is None:
        out = np.empty(chunks.width_irc, dtype="<i2")
    read_chunk_into(chunks, k, out)
    return out


def read_chunk_into(chunks: SeriesChunks, k: int, buffer) -> None:
    """Chunk ``k``'s bytes into ``buffer`` (anything writable of exactly ``chunk_nbytes``
    bytes: an array, a memoryview slice of a batch) with one positioned read."""
    offset = chunks.data_offset + k * chunks.chunk_nbytes
    fd = _fd(chunks)
    if _HAS_PREADV:
        got = os.preadv(fd, [buffer], offset)
    else:                                      # macOS before 11
        data = os.pread(fd, chunks.chunk_nbytes, offset)
        got = len(data)
        memoryview(buffer).cast("B")[:got] = data
    if got != chunks.chunk_nbytes:
        raise LunaInputError(f"chunk store file ends inside chunk {k} of {chunks.n_chunks} "
                             "(truncated since it was opened?): run luna-tui prepcache to "
                             "rebuild it", path=chunks.path)


# --------------------------------------------------------------------------- prepare

def _build_in_worker(data_dir: str, cache_dir: str, width, candidates_file, series_uid: str,
                     centres: np.ndarray):
    try:
        ChunkStore(data_dir, cache_dir, width, candidates_file).ensure(series_uid, centres)
    except LunaInputError as e:
        return series_uid, (e.message, e.path, e.line)
    return series_uid, None


def prepare_store(data_dir, cache_dir, centres_by_series: Mapping[str, np.ndarray],
                  width_irc=CHUNK_WIDTH_IRC, num_workers: int = 1, candidates_file=None,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Build every listed series' store that is missing or stale; returns how many were built.

    Resumable: finished series are kept, and the temporary files of a killed run are removed
    first. ``num_workers > 1`` builds in a process pool (spawned processes). ``progress(done,
    total)`` is called in the calling process."""
    store = ChunkStore(data_dir, cache_dir, width_irc, candidates_file)
    if store.dir.is_dir():
        remove_orphaned_temps(str(store.dir))
    total = len(centres_by_series)
    todo = [u for u, c in centres_by_series.items() if store.state(u, c) != "ready"]
    done = total - len(todo)
    if progress is not None:
        progress(done, total)
    if not todo:
        return 0
    if num_workers <= 1 or len(todo) == 1:
        for uid in todo:
            store.ensure(uid, centres_by_series[uid])
            done += 1
            if progress is not None:
                progress(done, total)
        return len(todo)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(num_workers, len(todo)),
                                                mp_context=ctx) as pool:
        futures = [pool.submit(_build_in_worker, str(data_dir), str(cache_dir), width_irc,
                               candidates_file, u, centres_by_series[u]) for u in todo]
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


def store_bytes(cache_dir, width_irc=CHUNK_WIDTH_IRC) -> int:
    """Bytes of finished store files (not temporary ones) on disk."""
    d = store_dir(cache_dir, width_irc)
    if not d.is_dir():
        return 0
    return sum(p.stat().st_size for p in d.glob("*.chunks"))   # temporaries end in a pid
