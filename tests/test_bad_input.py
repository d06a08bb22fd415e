"""Every bad input gives a LunaInputError naming the file (and line, for CSVs), and leaves
no partial file in the cache directory."""

import os

import numpy as np
import pytest

from luna_core.data.candidates import clear_cache, get_candidate_info_list
from luna_core.data.chunkstore import ChunkStore, prepare_store
from luna_core.data.ct import Ct
from luna_core.data.dsets import LunaDataset
from luna_core.errors import LunaInputError

from .lunadata import UID_A, UID_B, write_annotations, write_candidates, write_csv, write_ct


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


def _files_under(d):
    return [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs] if d.exists() else []


def _data(tmp_path, cand_rows=None, ann_rows=None):
    write_ct(tmp_path, UID_A)
    write_annotations(tmp_path, ann_rows if ann_rows is not None else [])
    write_candidates(tmp_path, cand_rows if cand_rows is not None else [(UID_A, 0, 0, 0, 1)])
    return tmp_path


def _raises(fn, *names, line=None):
    with pytest.raises(LunaInputError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for name in names:
        assert str(name) in msg, msg
    if line is not None:
        assert e.value.line == line and f":{line}:" in msg, msg
    return e.value


# ----------------------------------------------------------------------------- CSVs

@pytest.mark.parametrize("name, other", [("annotations.csv", "candidates.csv"),
                                         ("candidates.csv", "annotations.csv")])
def test_missing_csv(tmp_path, name, other):
    _data(tmp_path)
    (tmp_path / name).unlink()
    e = _raises(lambda: get_candidate_info_list(tmp_path), tmp_path / name)
    # the one that is missing, not the one that is there
    missing = (tmp_path / name).resolve()
    assert str(e) == f"{missing}: CSV file not found" and e.path == str(missing)
    assert other not in str(e)


def test_named_candidates_file_missing(tmp_path):
    _data(tmp_path)
    _raises(lambda: get_candidate_info_list(tmp_path, candidates_file="nope.csv"), "nope.csv")


def test_no_csv_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _raises(lambda: get_candidate_info_list(tmp_path / "data"), tmp_path / "data")


@pytest.mark.parametrize("which", ["candidates", "annotations"])
def test_missing_columns(tmp_path, which):
    _data(tmp_path)
    if which == "candidates":
        p = write_csv(tmp_path / "candidates.csv", ["seriesuid", "coordX", "coordY", "class"],
                      [(UID_A, 0, 0, 1)])
        e = _raises(lambda: get_candidate_info_list(tmp_path), p, "coordZ", line=1)
    else:
        p = write_csv(tmp_path / "annotations.csv", ["seriesuid", "coordX", "coordY", "coordZ"],
                      [(UID_A, 0, 0, 0)])
        e = _raises(lambda: get_candidate_info_list(tmp_path), p, "diameter_mm", line=1)
    assert e.path == str(p)


def test_empty_csv(tmp_path):
    _data(tmp_path)
    (tmp_path / "candidates.csv").write_text("")
    _raises(lambda: get_candidate_info_list(tmp_path), "candidates.csv", line=1)


GOOD = [(UID_A, 1.0, 2.0, 3.0, 0)] * 3
BAD_NUMBERS = "coordX/coordY/coordZ must be finite numbers and class 0 or 1"


@pytest.mark.parametrize("bad_row, what", [
    ((UID_A, "abc", 2.0, 3.0, 0), BAD_NUMBERS),
    ((UID_A, 1.0, "", 3.0, 0), BAD_NUMBERS),
    ((UID_A, 1.0, 2.0, "nan", 0), BAD_NUMBERS),
    ((UID_A, 1.0, 2.0, "inf", 0), BAD_NUMBERS),
    ((UID_A, 1.0, 2.0, 3.0, "yes"), BAD_NUMBERS),
    ((UID_A, 1.0, 2.0, 3.0, 2), BAD_NUMBERS),
    ((UID_A, 1.0, 2.0), "row has 3 field(s), expected at least 5"),
], ids=["letters", "empty", "nan", "inf", "class word", "class 2", "short row"])
def test_bad_candidate_row_names_line(tmp_path, bad_row, what):
    _data(tmp_path)
    p = write_candidates(tmp_path, GOOD + [bad_row] + GOOD)
    e = _raises(lambda: get_candidate_info_list(tmp_path), p, line=5)
    assert str(e) == f"{p.resolve()}:5: {what}" and e.message == what


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path):
    _data(tmp_path)
    p = tmp_path / "candidates.csv"
    p.write_text("seriesuid,coordX,coordY,coordZ,class\n\n"
                 f"{UID_A},0,0,0,1\n\n{UID_A},1,1,1,0\n")
    assert len(get_candidate_info_list(tmp_path)) == 2
    p.write_text(p.read_text() + f"\n{UID_A},1,x,1,0\n")
    _raises(lambda: get_candidate_info_list(tmp_path), p, line=7)


@pytest.mark.parametrize("bad_row", [
    (UID_A, "x", 0, 0, 5.0),
    (UID_A, 0, 0, 0, "big"),
    (UID_A, 0, 0, 0, -1.0),
])
def test_bad_annotation_row_names_line(tmp_path, bad_row):
    _data(tmp_path)
    p = write_annotations(tmp_path, [(UID_A, 0, 0, 0, 5.0), bad_row])
    _raises(lambda: get_candidate_info_list(tmp_path), p, line=3)


@pytest.mark.parametrize("uid", ["../../etc/passwd", "a/b", "..", "x\\y", "", "1.2..3", " 1.2"])
def test_bad_series_uid_in_candidates(tmp_path, uid):
    _data(tmp_path)
    p = write_candidates(tmp_path, GOOD + [(uid, 0, 0, 0, 0)])
    _raises(lambda: get_candidate_info_list(tmp_path), p, line=5)
    _raises(lambda: get_candidate_info_list(tmp_path, require_on_disk=False), p, line=5)


def test_bad_series_uid_in_annotations(tmp_path):
    _data(tmp_path)
    p = write_annotations(tmp_path, [("../x", 0, 0, 0, 5.0)])
    _raises(lambda: get_candidate_info_list(tmp_path), p, line=2)


def test_dotdot_uid_refused_by_cache(tmp_path):
    cache = tmp_path / "cache"
    evil = "../../outside"
    (tmp_path / "data" / "subset0").mkdir(parents=True)
    one = np.zeros((1, 3))
    for fn in (lambda: ChunkStore(tmp_path / "data", cache).ensure(evil, one),
               lambda: ChunkStore(tmp_path / "data", cache).path(evil),
               lambda: prepare_store(tmp_path / "data", cache, {evil: one}, num_workers=1),
               lambda: Ct.load(evil, tmp_path / "data")):
        _raises(fn, evil)
    assert _files_under(cache) == []
    assert not list(tmp_path.glob("outside*"))


# ----------------------------------------------------------------------------- CT files

def _try_cache(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(LunaInputError) as e:
        ChunkStore(tmp_path / "data", cache).ensure(UID_A, np.zeros((1, 3)))
    assert "\n" not in str(e.value)
    assert _files_under(cache) == []
    return str(e.value)


def test_missing_raw(tmp_path):
    mhd = write_ct(tmp_path / "data", UID_A)
    mhd.with_suffix(".raw").unlink()
    msg = _try_cache(tmp_path)
    assert str(mhd.with_suffix(".raw")) in msg and "missing" in msg


def test_truncated_raw(tmp_path):
    mhd = write_ct(tmp_path / "data", UID_A)
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-2])
    msg = _try_cache(tmp_path)
    assert str(raw) in msg and str(20 * 30 * 30 * 2) in msg


@pytest.mark.parametrize("header", [
    "this is not a header\n",
    "NDims = 3\nDimSize = 30 30 20\nElementType = MET_BOGUS\nElementDataFile = {raw}\n",
    "ObjectType = Image\nNDims = 7\nDimSize = 30 30 20\nElementType = MET_SHORT\n"
    "ElementDataFile = {raw}\n",
    "ObjectType = Image\nNDims = 3\nDimSize = 30 30 20\nElementType = MET_SHORT\n"
    "ElementSpacing = 0 0 0\nElementDataFile = {raw}\n",
    "ObjectType = Image\nNDims = 2\nDimSize = 30 600\nElementType = MET_SHORT\n"
    "ElementDataFile = {raw}\n",
])
def test_unreadable_header(tmp_path, header):
    mhd = write_ct(tmp_path / "data", UID_A)
    mhd.write_text(header.format(raw=f"{UID_A}.raw"))
    msg = _try_cache(tmp_path)
    assert str(mhd) in msg


def test_binary_garbage_header(tmp_path):
    mhd = write_ct(tmp_path / "data", UID_A)
    mhd.write_bytes(np.random.default_rng(0).bytes(5000))
    assert str(mhd) in _try_cache(tmp_path)


def test_dataset_reports_bad_ct_on_first_read(tmp_path):
    data = tmp_path / "data"
    write_ct(data, UID_A)
    mhd = write_ct(data, UID_B, subset="subset1")
    mhd.with_suffix(".raw").write_bytes(b"\0" * 10)
    write_annotations(data, [])
    write_candidates(data, [(UID_A, 0, 0, 0, 0), (UID_B, 0, 0, -30, 0)])
    ds = LunaDataset(val_stride=0, data_dir=data, cache_dir=tmp_path / "cache")
    ndx = [c.series_uid for c in ds.candidate_list].index(UID_B)
    with pytest.raises(LunaInputError, match=str(mhd.with_suffix(".raw"))):
        ds[ndx]
    assert [p for p in _files_under(tmp_path / "cache") if UID_B in p] == []


def test_dataset_with_no_series_on_disk(tmp_path):
    data = tmp_path / "data"
    (data / "subset0").mkdir(parents=True)
    write_annotations(data, [])
    write_candidates(data, [(UID_A, 0, 0, 0, 0)])
    _raises(lambda: LunaDataset(data_dir=data, cache_dir=tmp_path / "cache"), data)


def test_a_truncated_raw_stops_the_run_before_its_folder_is_made(tiny_data, tmp_path):
    """`check` names a truncated .raw; a run must too, at start (exit 2, no run folder),
    not at the first batch that reads that series."""
    import glob
    import shutil

    from luna_core.run import events as ev
    from tests.trainhelpers import run_loop

    data = tmp_path / "luna"
    shutil.copytree(tiny_data["data_dir"], data)
    raw = sorted(glob.glob(str(data / "subset*" / "*.raw")))[-1]
    with open(raw, "r+b") as f:
        f.truncate(os.path.getsize(raw) - 4096)
    argv = ["--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--runs-dir", str(tmp_path / "runs"), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--epochs", "1"]
    code, rec, console = run_loop(argv)
    assert code == 2
    (finished,) = rec.of(ev.RunFinished)
    assert finished.error.startswith(f"{raw}: voxel file is ") and "bytes but" in finished.error
    assert not (tmp_path / "runs").exists()
    assert rec.of(ev.BatchDone) == [] and rec.of(ev.RunStarted) == []
