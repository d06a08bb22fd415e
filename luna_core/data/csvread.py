"""Reading the LUNA16 CSVs (candidates.csv, annotations.csv) with the csv module: the header
by column name, every row checked, the first bad one reported with its file and line."""

from __future__ import annotations

import csv
import itertools
import math
import operator
from pathlib import Path

import numpy as np

from luna_core.errors import LunaInputError

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
#: The class column's values: is the candidate a nodule? (The release writes 0 and 1.)
CLASS_OF = {"0": False, "1": True, "0.0": False, "1.0": True}


def check_series_uid(series_uid: str, path=None, line: int | None = None) -> str:
    """Refuse a series uid that could name a path outside the data or cache directory."""
    bad = (
        not series_uid
        or "/" in series_uid
        or "\\" in series_uid
        or ".." in series_uid
        or "\x00" in series_uid
        or series_uid.strip() != series_uid
    )
    if bad:
        raise LunaInputError(f"invalid seriesuid {series_uid!r} (empty, or contains a path "
                             "separator, '..' or surrounding blanks)", path=path, line=line)
    return series_uid


# --------------------------------------------------------------------------- locating files


def _open_csv(path: Path):
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise LunaInputError("CSV file not found", path=path) from None
    except OSError as e:
        raise LunaInputError(f"cannot read CSV file: {e.strerror}", path=path) from None
    return f


def _header_index(reader, path: Path, columns) -> list[int]:
    try:
        header = next(reader)
    except StopIteration:
        raise LunaInputError("empty CSV file (no header)", path=path, line=1) from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise LunaInputError(f"unreadable CSV header: {e}", path=path, line=1) from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise LunaInputError(f"header lacks column(s) {', '.join(missing)} "
                             f"(expected {','.join(columns)})", path=path, line=1)
    return [header.index(c) for c in columns]


def _rows(reader, path: Path):
    """Yield (line, row) for non-blank rows, turning csv/decoding errors into input errors."""
    it = iter(reader)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            raise LunaInputError(f"unreadable CSV row: {e}", path=path,
                                 line=reader.line_num + 1) from None
        if row:
            yield reader.line_num, row


def _bad_row(path, line, row, ncols, what):
    if len(row) < ncols:
        return LunaInputError(f"row has {len(row)} field(s), expected at least {ncols}",
                              path=path, line=line)
    return LunaInputError(what, path=path, line=line)


def _coords(row, i_x, i_y, i_z):
    x, y, z = float(row[i_x]), float(row[i_y]), float(row[i_z])
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
        raise ValueError("non-finite")
    return x, y, z


def read_annotations(path: Path, excluded: bool = False
                     ) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{uid: [(x, y, z, diameter_mm)]}`` from annotations.csv or, ``excluded``, from
    annotations_excluded.csv (whose diameter may be -1: unknown)."""
    return _read_nodules(path, ANNOTATION_COLUMNS, excluded)


#: The book's nodule list with malignancy (ch. 13-14), beside the CSVs: its nodule columns
#: and ``mal_bool``.
MALIGNANCY_CSV = "annotations_with_malignancy.csv"
MALIGNANCY_COLUMNS = (*ANNOTATION_COLUMNS, "mal_bool")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def read_malignancy(path: Path) -> dict[str, list[tuple[float, float, float, float, bool]]]:
    """``{uid: [(x, y, z, diameter_mm, malignant)]}`` from the book's
    annotations_with_malignancy.csv (one row a nodule; ``mal_bool`` the strings True/False);
    a LunaInputError naming the file and line for anything else."""
    return _read_nodules(path, MALIGNANCY_COLUMNS, False)


def _read_nodules(path: Path, columns: tuple[str, ...], excluded: bool) -> dict[str, list]:
    """The rows of a nodule list, per series: (x, y, z, diameter) and, when ``columns``
    has ``mal_bool``, the malignancy."""
    by_series: dict[str, list] = {}
    graded = "mal_bool" in columns
    with _open_csv(path) as f:
        reader = csv.reader(f)
        idx = _header_index(reader, path, columns)
        i_uid, i_x, i_y, i_z, i_d = idx[:5]
        ncols = max(idx) + 1
        checked: set[str] = set()
        for line, row in _rows(reader, path):
            try:
                uid = row[i_uid]
                x, y, z = _coords(row, i_x, i_y, i_z)
                d = float(row[i_d])
                if not (math.isfinite(d) and (d >= 0 or excluded)):
                    raise ValueError("bad diameter")
                extra = (_BOOLS[row[idx[5]].strip().lower()],) if graded else ()
            except (ValueError, IndexError, KeyError):
                raise _bad_row(path, line, row, ncols,
                               "coordX/coordY/coordZ/diameter_mm must be finite numbers"
                               + ("" if excluded else " (diameter >= 0)")
                               + (" and mal_bool True or False" if graded else "")) from None
            if uid not in checked:
                check_series_uid(uid, path=path, line=line)
                checked.add(uid)
            by_series.setdefault(uid, []).append((x, y, z, d, *extra))
    return by_series


_BLOCK_ROWS = 1 << 16


def parse_candidates(path: Path):
    """Columns (uids, x, y, z, is_nodule) of candidates.csv: a fast pass over blocks of rows,
    and, at the first anomaly, a careful pass that reports the first bad row by its line.
    Both apply the same rules: finite coordinates, ``CLASS_OF``, a well-formed series uid."""
    columns = _parse_candidates_fast(path)
    return columns if columns is not None else _parse_candidates_careful(path)


def _parse_candidates_fast(path: Path):
    """Columns (uids, x, y, z, is_nodule) of a well-formed file, or None at the first
    anomaly (the careful parser then finds and reports it)."""
    uids: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    zs: list[float] = []
    nods: list[bool] = []
    intern: dict[str, str] = {}
    with _open_csv(path) as f:
        reader = csv.reader(f)
        cols = _header_index(reader, path, CANDIDATE_COLUMNS)
        getter = operator.itemgetter(*cols)
        rows = filter(None, reader)
        try:
            while True:
                block = list(map(getter, itertools.islice(rows, _BLOCK_ROWS)))
                if not block:
                    break
                b_uid, b_x, b_y, b_z, b_c = zip(*block)
                del block
                fx, fy, fz = list(map(float, b_x)), list(map(float, b_y)), list(map(float, b_z))
                if not np.isfinite(np.array((fx, fy, fz))).all():
                    return None
                if not CLASS_OF.keys() >= set(b_c):
                    return None
                uids.extend(map(intern.setdefault, b_uid, b_uid))
                xs.extend(fx)
                ys.extend(fy)
                zs.extend(fz)
                nods.extend(map(CLASS_OF.__getitem__, b_c))
        except (ValueError, IndexError, csv.Error, UnicodeDecodeError):
            return None
    for u in intern:
        try:
            check_series_uid(u)
        except LunaInputError:
            return None
    return uids, xs, ys, zs, nods


def _parse_candidates_careful(path: Path):
    """Row-by-row parse that reports the first bad row with its line number."""
    uids: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    zs: list[float] = []
    nods: list[bool] = []
    checked: set[str] = set()
    with _open_csv(path) as f:
        reader = csv.reader(f)
        i_uid, i_x, i_y, i_z, i_c = _header_index(reader, path, CANDIDATE_COLUMNS)
        ncols = max(i_uid, i_x, i_y, i_z, i_c) + 1
        for line, row in _rows(reader, path):
            try:
                uid = row[i_uid]
                x, y, z = _coords(row, i_x, i_y, i_z)
                is_nodule = CLASS_OF[row[i_c].strip()]
            except (ValueError, IndexError, KeyError):
                raise _bad_row(path, line, row, ncols,
                               "coordX/coordY/coordZ must be finite numbers and class 0 or 1"
                               ) from None
            if uid not in checked:
                check_series_uid(uid, path=path, line=line)
                checked.add(uid)
            uids.append(uid)
            xs.append(x)
            ys.append(y)
            zs.append(z)
            nods.append(is_nodule)
    return uids, xs, ys, zs, nods
