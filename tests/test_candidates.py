import logging
import os
import re

import numpy as np
import pytest

from luna_core.data import candidates as C
from luna_core.data.candidates import (
    CandidateInfo,
    candidate_fingerprint,
    find_csv_dir,
    get_candidate_info_list,
    report_missing_series,
    split_candidates,
)
from luna_core.data.geometry import XyzTuple
from luna_core.errors import LunaInputError

from .lunadata import UID_A, UID_B, UID_C, write_annotations, write_candidates


@pytest.fixture(autouse=True)
def _fresh_cache():
    C.clear_cache()
    yield
    C.clear_cache()


def _touch_series(data_dir, *uids, subset="subset0"):
    d = data_dir / subset
    d.mkdir(parents=True, exist_ok=True)
    for u in uids:
        (d / f"{u}.mhd").write_text("")


def _reference(cand_rows, ann_rows, on_disk):
    """The book's algorithm, written out plainly (rows as read from the CSVs)."""
    anns = {}
    for uid, x, y, z, d in ann_rows:
        anns.setdefault(uid, []).append(((float(x), float(y), float(z)), float(d)))
    out = []
    for uid, x, y, z, cls in cand_rows:
        if uid not in on_disk:
            continue
        c = (float(x), float(y), float(z))
        diameter = 0.0
        for center, d in anns.get(uid, []):
            if all(abs(c[i] - center[i]) <= d / 4 for i in range(3)):
                diameter = d
                break
        out.append(CandidateInfo(bool(int(cls)), diameter, uid, XyzTuple(*c)))
    out.sort(reverse=True)
    return out


def test_diameter_merge_per_axis_and_first_wins(tmp_path):
    _touch_series(tmp_path, UID_A, UID_B)
    # d = 8 -> within 2 mm on every axis separately
    write_annotations(tmp_path, [
        (UID_A, 0.0, 0.0, 0.0, 8.0),
        (UID_A, 0.5, 0.0, 0.0, 12.0),      # also matches the first candidate: first wins
        (UID_B, 100.0, 100.0, 100.0, 8.0),
    ])
    write_candidates(tmp_path, [
        (UID_A, 2.0, -2.0, 2.0, 1),        # exactly d/4 on every axis: inside -> 8
        (UID_B, 102.0, 101.9, 98.0, 0),    # inside
        (UID_B, 102.01, 100.0, 100.0, 0),  # just outside on x only -> 0
        (UID_B, 100.0, 100.0, 97.99, 0),   # just outside on z only -> 0
        (UID_A, 3.5, 0.0, 0.0, 1),         # outside the first (8), inside the second (12)
    ])
    got = {(c.series_uid, c.center_xyz): c.diameter_mm
           for c in get_candidate_info_list(tmp_path)}
    assert got[(UID_A, (2.0, -2.0, 2.0))] == 8.0
    assert got[(UID_B, (102.0, 101.9, 98.0))] == 8.0
    assert got[(UID_B, (102.01, 100.0, 100.0))] == 0.0
    assert got[(UID_B, (100.0, 100.0, 97.99))] == 0.0
    assert got[(UID_A, (3.5, 0.0, 0.0))] == 12.0


def test_sort_order(tmp_path):
    _touch_series(tmp_path, UID_A, UID_B, UID_C)
    write_annotations(tmp_path, [(UID_A, 0, 0, 0, 4.0), (UID_B, 0, 0, 0, 10.0)])
    write_candidates(tmp_path, [
        (UID_A, 5, 5, 5, 0),
        (UID_C, 1, 2, 3, 0),
        (UID_A, 0, 0, 0, 1),      # nodule, 4 mm
        (UID_C, 1, 2, 4, 0),
        (UID_B, 0, 0, 0, 1),      # nodule, 10 mm
        (UID_B, 9, 9, 9, 1),      # nodule, no annotation match
        (UID_C, 0, 9, 9, 0),
    ])
    got = get_candidate_info_list(tmp_path)
    assert [(c.is_nodule, c.diameter_mm, c.series_uid, tuple(c.center_xyz)) for c in got] == [
        (True, 10.0, UID_B, (0.0, 0.0, 0.0)),
        (True, 4.0, UID_A, (0.0, 0.0, 0.0)),
        (True, 0.0, UID_B, (9.0, 9.0, 9.0)),
        (False, 0.0, UID_C, (1.0, 2.0, 4.0)),
        (False, 0.0, UID_C, (1.0, 2.0, 3.0)),
        (False, 0.0, UID_C, (0.0, 9.0, 9.0)),
        (False, 0.0, UID_A, (5.0, 5.0, 5.0)),
    ]
    assert all(isinstance(c, CandidateInfo) and isinstance(c.center_xyz, XyzTuple)
               for c in got)
    assert all(type(c.is_nodule) is bool and type(c.diameter_mm) is float for c in got)


def test_matches_reference_on_random_data(tmp_path):
    rng = np.random.default_rng(0)
    uids = [f"1.2.840.{k}" for k in range(12)]
    _touch_series(tmp_path, *uids[:9])
    ann = [(uids[rng.integers(12)], *np.round(rng.uniform(-20, 20, 3), 1),
            float(rng.choice([4.0, 8.0, 16.0]))) for _ in range(40)]
    cand = []
    for _ in range(3000):
        a = ann[rng.integers(len(ann))]
        if rng.random() < 0.5:
            xyz = np.round(np.array(a[1:4]) + rng.uniform(-5, 5, 3), 1)
            uid = a[0]
        else:
            xyz = np.round(rng.uniform(-20, 20, 3), 1)
            uid = uids[rng.integers(12)]
        cand.append((uid, *xyz, int(rng.random() < 0.1)))
    cand += cand[:50]                                      # exact duplicates
    write_annotations(tmp_path, ann)
    write_candidates(tmp_path, cand)
    got = get_candidate_info_list(tmp_path)
    assert got == _reference(cand, ann, set(uids[:9]))
    assert sum(c.diameter_mm > 0 for c in got) > 100


def test_only_series_on_disk_one_warning(tmp_path, caplog):
    _touch_series(tmp_path, UID_A, subset="subset3")
    write_annotations(tmp_path, [])
    write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0), (UID_B, 0, 0, 0, 0), (UID_C, 1, 1, 1, 0),
                                (UID_C, 2, 2, 2, 1)])
    with caplog.at_level(logging.WARNING, logger="luna_core.data.candidates"):
        got = get_candidate_info_list(tmp_path)
        assert not caplog.records  # reading is silent; the run reports it once
        assert report_missing_series(tmp_path) == 2
    assert [c.series_uid for c in got] == [UID_A]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of the series" in warnings[0].getMessage()
    assert len(get_candidate_info_list(tmp_path, require_on_disk=False)) == 4


def test_cached_per_mtime(tmp_path):
    _touch_series(tmp_path, UID_A)
    write_annotations(tmp_path, [])
    p = write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0)])
    first = get_candidate_info_list(tmp_path)
    first.append("mutated by the caller")
    assert len(get_candidate_info_list(tmp_path)) == 1
    write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0), (UID_A, 1, 1, 1, 0)])
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(get_candidate_info_list(tmp_path)) == 2
    # a new series appearing on disk is noticed too
    write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0), (UID_B, 1, 1, 1, 0)])
    _touch_series(tmp_path, UID_B, subset="subset1")
    assert {c.series_uid for c in get_candidate_info_list(tmp_path)} == {UID_A, UID_B}


def test_candidates_v2_fallback_and_named_file(tmp_path):
    _touch_series(tmp_path, UID_A)
    write_annotations(tmp_path, [])
    write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0)] * 3, name="candidates_V2.csv")
    assert len(get_candidate_info_list(tmp_path)) == 3
    write_candidates(tmp_path, [(UID_A, 0, 0, 0, 0)], name="candidates.csv")
    assert len(get_candidate_info_list(tmp_path)) == 1
    assert len(get_candidate_info_list(tmp_path, candidates_file="candidates_V2.csv")) == 3
    other = write_candidates(tmp_path / "elsewhere", [(UID_A, 0, 0, 0, 1)] * 2)
    assert len(get_candidate_info_list(tmp_path, candidates_file=other)) == 2


def test_find_csv_dir_official_then_book_layout(tmp_path, monkeypatch):
    data = tmp_path / "data-unversioned/part2/luna"
    _touch_series(data, UID_A)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LunaInputError, match="annotations.csv"):
        find_csv_dir(data)
    book = tmp_path / "data/part2/luna"
    write_annotations(book, [])
    write_candidates(book, [(UID_A, 0, 0, 0, 1)])
    assert find_csv_dir(data).resolve() == book.resolve()
    assert len(get_candidate_info_list(data)) == 1
    write_annotations(data, [])
    write_candidates(data, [(UID_A, 0, 0, 0, 0), (UID_A, 1, 0, 0, 0)])
    assert find_csv_dir(data) == data
    assert len(get_candidate_info_list(data)) == 2


def _cands(n, nodules=0):
    return [CandidateInfo(i < nodules, 0.0, UID_A, XyzTuple(float(i), 0.0, 0.0))
            for i in range(n)]


def test_split_sizes_val_stride_10():
    full = _cands(101)
    val = split_candidates(full, 10, True)
    trn = split_candidates(full, 10, False)
    assert len(val) == 11 and len(trn) == 90
    assert val == full[::10]
    assert sorted(val + trn) == sorted(full)
    assert len(full) == 101                      # the input is not modified
    assert split_candidates(full, 0, True) == full == split_candidates(full, 0, False)


def test_empty_split_names_data_dir(tmp_path):
    with pytest.raises(LunaInputError) as e:
        split_candidates([], 10, False, data_dir=tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(LunaInputError):
        split_candidates(_cands(1), 10, False, data_dir=tmp_path)   # the one goes to val


# Checkpoints store the training split's fingerprint and --resume refuses another data set:
# it must be the same for the same candidates (in any order, in any process, in any version
# that can resume the checkpoint) and differ when any field of any row differs.
ONE = CandidateInfo(True, 6.5, UID_A, XyzTuple(1.5, -2.5, 3.5))
FINGERPRINT_4 = "f74ff8066d405ef2cab80676f83ee90bd50032b2afaa1361432b3a36f2e1cb3a"


def test_fingerprint_is_sha256_hex_and_stable():
    a = [ONE] + _cands(3, nodules=1)
    fp = candidate_fingerprint(a)
    assert re.fullmatch(r"[0-9a-f]{64}", fp), fp
    assert fp == FINGERPRINT_4                       # no per-process salt, no format drift
    assert candidate_fingerprint([ONE] + _cands(3, nodules=1)) == fp   # equal content
    assert candidate_fingerprint(list(reversed(a))) == fp
    assert candidate_fingerprint(tuple(a[2:] + a[:2])) == fp
    assert candidate_fingerprint([]) != fp


def test_fingerprint_changes_with_any_field_or_row():
    # one row, so that a changed field cannot just move the row in the sort order
    fp1 = candidate_fingerprint([ONE])
    fields = {
        "is_nodule": ONE._replace(is_nodule=False),
        "diameter": ONE._replace(diameter_mm=6.25),
        "series_uid": ONE._replace(series_uid=UID_B),
        "x": ONE._replace(center_xyz=XyzTuple(1.5 + 1e-9, -2.5, 3.5)),
        "y": ONE._replace(center_xyz=XyzTuple(1.5, -2.5 + 1e-9, 3.5)),
        "z": ONE._replace(center_xyz=XyzTuple(1.5, -2.5, 3.5 + 1e-9)),
    }
    fps = {name: candidate_fingerprint([row]) for name, row in fields.items()}
    a = _cands(20, nodules=2)
    fp = candidate_fingerprint(a)
    rows = {
        "row dropped": a[:-1],
        "row duplicated": a + [a[3]],
        "all series": [x._replace(series_uid=UID_B) for x in a],
    }
    fps.update({name: candidate_fingerprint(v) for name, v in rows.items()})
    assert all(f not in (fp1, fp) for f in fps.values()), fps
    assert len(set(fps.values())) == len(fps)


def test_the_fast_and_careful_parsers_apply_one_class_rule(tmp_path):
    """Both passes over candidates.csv take the class column by the same table (CLASS_OF):
    the fast one does not fall back on a file the careful one accepts, and they agree."""
    from luna_core.data import csvread

    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100"
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,class\n"
                    f"{uid},1.5,2,3,1.0\n{uid},4,5,6,0\n{uid},7,8,9,1\n")
    fast = csvread._parse_candidates_fast(path)
    assert fast is not None
    assert fast == csvread._parse_candidates_careful(path) == csvread.parse_candidates(path)
    assert fast[4] == [True, False, True]
    path.write_text(f"seriesuid,coordX,coordY,coordZ,class\n{uid},1,2,3,1\n{uid},4,5,6,2\n")
    with pytest.raises(LunaInputError, match="class 0 or 1") as err:
        csvread.parse_candidates(path)
    assert err.value.line == 3
