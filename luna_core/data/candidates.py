"""The candidate list: candidates.csv + annotations.csv, merged and sorted like the book.

``get_candidate_info_list`` reads the CSVs with the csv module (about 2 s for the 551,065 rows
of candidates.csv), gives each candidate the diameter of the first matching annotation, keeps
the series present on disk and sorts the result (nodules first, larger first, then series uid,
then coordinates). The result is cached in-process per (paths, sizes, mtimes).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from luna_core.errors import LunaInputError

from .csvread import parse_candidates, read_annotations
from .geometry import XyzTuple

log = logging.getLogger(__name__)

ANNOTATIONS_CSV = "annotations.csv"
CANDIDATES_CSVS = ("candidates.csv", "candidates_V2.csv")
BOOK_CSV_DIR = Path("data/part2/luna")



class CandidateInfo(NamedTuple):
    is_nodule: bool
    diameter_mm: float
    series_uid: str
    center_xyz: XyzTuple


# --------------------------------------------------------------------------- series uids

def _has_csvs(d: Path) -> bool:
    return any((d / name).is_file() for name in (ANNOTATIONS_CSV, *CANDIDATES_CSVS))


def find_csv_dir(data_dir) -> Path:
    """The CSVs beside ``subset*/`` in ``data_dir`` (official layout), else the book's
    ``data/part2/luna/`` (relative to the current directory)."""
    data_dir = Path(data_dir)
    if _has_csvs(data_dir):
        return data_dir
    if not data_dir.is_dir():
        raise LunaInputError("the data folder does not exist (--data-dir: the LUNA16 folder "
                             "with subset*/ and the CSVs; 'luna-tui synth --out DIR' writes "
                             "a demo one)", path=data_dir)
    if _has_csvs(BOOK_CSV_DIR):
        return BOOK_CSV_DIR
    raise LunaInputError(f"no {ANNOTATIONS_CSV} / candidates.csv here nor in "
                         f"{BOOK_CSV_DIR}/ (relative to {os.getcwd()})", path=data_dir)


def _candidates_path(csv_dir: Path, candidates_file) -> Path:
    if candidates_file is not None:
        p = Path(candidates_file)
        if p.is_absolute() or p.exists() or len(p.parts) > 1:
            return p
        return csv_dir / p
    for name in CANDIDATES_CSVS:
        if (csv_dir / name).is_file():
            return csv_dir / name
    return csv_dir / CANDIDATES_CSVS[0]


def series_on_disk(data_dir) -> set[str]:
    """Series uids with a ``data_dir/subset*/<uid>.mhd``."""
    found = set()
    for sub in Path(data_dir).glob("subset*"):
        if sub.is_dir():
            found.update(p.name[:-4] for p in sub.iterdir() if p.name.endswith(".mhd"))
    return found


def _stat_key(p: Path):
    try:
        st = p.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _read_candidates(path: Path, annotations, on_disk: set[str] | None):
    """Returns (sorted list of CandidateInfo, series uids listed but not on disk).

    The diameter merge and the sort are done column-wise with numpy; they give exactly the
    book's result (first matching annotation; ``sort(reverse=True)`` of the tuples)."""
    columns = parse_candidates(path)
    uids, xs, ys, zs, nods = columns
    del columns
    uniq = sorted(set(uids))                       # str order, as the tuples compare
    rank = {u: k for k, u in enumerate(uniq)}
    code = np.fromiter(map(rank.__getitem__, uids), dtype=np.int64, count=len(uids))
    missing: set[str] = set()
    if on_disk is not None:
        missing = {u for u in uniq if u not in on_disk}
    keep = np.ones(len(uids), dtype=bool)
    if missing:
        keep[:] = np.isin(code, [rank[u] for u in missing], invert=True)
    idx = np.flatnonzero(keep)
    code = code[idx]
    xyz = np.array((xs, ys, zs), dtype=np.float64)[:, idx]
    nod = np.array(nods, dtype=bool)[idx]
    del xs, ys, zs, nods

    # Diameter: the first annotation of the series within d/4 on every axis, else 0.
    diam = np.zeros(len(idx), dtype=np.float64)
    if len(idx):
        order = np.argsort(code, kind="stable")
        bounds = np.searchsorted(code[order], np.arange(len(uniq) + 1))
        for u, anns in annotations.items():
            k = rank.get(u)
            if k is None or bounds[k] == bounds[k + 1]:
                continue
            rows = order[bounds[k]:bounds[k + 1]]
            c = xyz[:, rows]
            unset = np.ones(len(rows), dtype=bool)
            for ax, ay, az, ad in anns:
                r = ad / 4
                hit = (unset & (np.abs(c[0] - ax) <= r) & (np.abs(c[1] - ay) <= r)
                       & (np.abs(c[2] - az) <= r))
                diam[rows[hit]] = ad
                unset &= ~hit

    # Book order: sort(reverse=True) on (is_nodule, diameter, uid, (x, y, z)), ties in file
    # order: a stable ascending sort of the reversed columns, itself reversed.
    n = len(idx)
    d_rank = np.unique(diam, return_inverse=True)[1].reshape(-1)
    first = nod.astype(np.int64) * (int(d_rank.max(initial=0)) + 1) + d_rank
    rev = slice(None, None, -1)
    srt = (n - 1 - np.lexsort((xyz[2][rev], xyz[1][rev], xyz[0][rev], code[rev],
                              first[rev])))[::-1]
    out_uid = [uniq[k] for k in code[srt].tolist()]
    new_xyz = functools.partial(tuple.__new__, XyzTuple)
    centers = map(new_xyz, zip(xyz[0][srt].tolist(), xyz[1][srt].tolist(),
                               xyz[2][srt].tolist()))
    new_cand = functools.partial(tuple.__new__, CandidateInfo)
    out = list(map(new_cand, zip(nod[srt].tolist(), diam[srt].tolist(), out_uid, centers)))
    return out, missing


@contextlib.contextmanager
def gc_paused():
    """Half a million new tuples trigger many full garbage collections (which cost more
    than building them); use around code that builds no reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.lru_cache(maxsize=8)
def _cached_list(annotations_path: Path, candidates_path: Path, data_dir: Path,
                 require_on_disk: bool, _stamp):
    """(candidates, series uids listed but not on disk), both tuples."""
    annotations = read_annotations(annotations_path)
    on_disk = series_on_disk(data_dir) if require_on_disk else None
    with gc_paused():
        candidates, missing = _read_candidates(candidates_path, annotations, on_disk)
    return tuple(candidates), tuple(sorted(missing))


def csv_paths(data_dir, candidates_file=None) -> tuple[Path, Path]:
    """(annotations.csv, candidates file) as ``get_candidate_info_list`` would read them."""
    csv_dir = find_csv_dir(data_dir)
    ann = (csv_dir / ANNOTATIONS_CSV).resolve()
    cand = _candidates_path(csv_dir, candidates_file).resolve()
    for p in (ann, cand):
        if not p.is_file():
            raise LunaInputError("CSV file not found", path=p)
    return ann, cand


def _parsed(data_dir, candidates_file, require_on_disk: bool):
    data_dir = Path(data_dir)
    ann, cand = csv_paths(data_dir, candidates_file)
    data_res = data_dir.resolve()
    stamp = [_stat_key(ann), _stat_key(cand)]
    if require_on_disk:
        stamp.append(_stat_key(data_res))
        stamp.extend((sub.name, _stat_key(sub)) for sub in sorted(data_res.glob("subset*")))
    return _cached_list(ann, cand, data_res, require_on_disk, tuple(stamp))


def get_candidate_info_list(data_dir, candidates_file=None,
                            require_on_disk: bool = True) -> list[CandidateInfo]:
    """The sorted candidate list (a fresh list each call; the parse is cached in-process)."""
    return list(_parsed(data_dir, candidates_file, require_on_disk)[0])


def candidate_tuple(data_dir, candidates_file=None) -> tuple[CandidateInfo, ...]:
    """The sorted candidate list of the series on disk as the cached tuple itself: the same
    object while the CSVs and the folders are unchanged (so per-list work can be cached)."""
    return _parsed(data_dir, candidates_file, True)[0]


def report_missing_series(data_dir, candidates_file=None) -> int:
    """Log once (per call) how many series the candidates file lists that are not on disk;
    returns that number. Real users often download only some subsets."""
    missing = _parsed(data_dir, candidates_file, True)[1]
    if missing:
        cand = csv_paths(data_dir, candidates_file)[1]
        log.warning("%d of the series listed in %s were not found under %s/subset*/ "
                    "(their candidates are skipped)", len(missing), cand, data_dir)
    return len(missing)


def clear_cache() -> None:
    _cached_list.cache_clear()


# --------------------------------------------------------------------------- split / fingerprint

SPLITS = ("candidates", "series")


def split_indices(n: int, val_stride: int, is_val: bool, split: str = "candidates",
                  series_uids=None) -> np.ndarray:
    """Positions in the sorted list of the validation or training (the rest) candidates.

    ``split="candidates"`` (the book): every ``val_stride``-th candidate (0, stride, ...) is
    validation, so a scan (often a nodule) has candidates on both sides. ``"series"``: every
    ``val_stride``-th series of the sorted series uids (0, stride, ...) is validation with all
    its candidates (``series_uids``: each candidate's uid), so no scan is on both sides.
    ``val_stride <= 0`` keeps the whole list for both, like the book."""
    every = np.arange(n, dtype=np.int64)
    if val_stride <= 0:
        return every
    if split == "series":
        uids = list(series_uids)
        val_series = set(sorted(set(uids))[::val_stride])
        is_val_row = np.fromiter((u in val_series for u in uids), dtype=bool, count=n)
    elif split == "candidates":
        is_val_row = every % val_stride == 0
    else:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return every[is_val_row] if is_val else every[~is_val_row]


def split_candidates(candidate_list, val_stride: int, is_val: bool, data_dir=None,
                     split: str = "candidates") -> list:
    """The validation or training part of the sorted list (``split_indices``)."""
    rows = split_indices(len(candidate_list), val_stride, is_val, split,
                         [c.series_uid for c in candidate_list] if split == "series" else None)
    if not len(rows):
        which = "validation" if is_val else "training"
        raise LunaInputError(f"no {which} candidates ({len(candidate_list)} candidate(s) on "
                             f"disk in total, val_stride={val_stride}, split by {split}): are "
                             "the subset*/ folders and the CSVs there?", path=data_dir)
    return [candidate_list[i] for i in rows.tolist()]


def candidate_fingerprint(candidate_list) -> str:
    """sha256 hex of the (sorted) list's content, independent of the list's order."""
    h = hashlib.sha256()
    h.update(b"luna-candidates-v1\n")
    pack = struct.Struct("<?ddddI").pack
    parts = []
    for c in sorted(candidate_list, reverse=True):
        x, y, z = c.center_xyz
        uid = c.series_uid.encode()
        parts.append(pack(bool(c.is_nodule), float(c.diameter_mm), x, y, z, len(uid)))
        parts.append(uid)
    h.update(b"".join(parts))
    return h.hexdigest()
