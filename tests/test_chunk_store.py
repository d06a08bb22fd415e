"""The chunk store: chunks equal chunks cut from the CT, rebuilt exactly when they must be,
never read as garbage, and built resumably."""

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from luna_core.data import chunkstore as cs
from luna_core.data.chunkstore import (
    ChunkStore,
    group_centres,
    prepare_store,
    read_chunk,
    read_header,
    series_centres,
    store_dir,
)
from luna_core.data.ct import Ct, window_starts
from luna_core.errors import LunaInputError

from .lunadata import (
    FLIP_XY,
    ROT90Z_FLIPZ,
    UID_A,
    UID_B,
    UID_C,
    center_xyz_of,
    edit_mhd,
    ramp_volume,
    unique_volume,
    write_ct,
)

ORIGIN, SPACING = (-10.0, -20.0, -30.0), (0.75, 0.75, 2.5)
WIDTH = (32, 48, 48)


def centres_of(xyz_list) -> np.ndarray:
    """One series' distinct centres in store order."""
    xyz = np.asarray(xyz_list, dtype=np.float64).reshape(-1, 3)
    centres, _offsets, _ = group_centres(np.zeros(len(xyz), np.int64), xyz, 1)
    return centres


def chunks_by_centre(store, uid, xyz_list):
    """{centre xyz: (chunk int16, centre irc)} read back from the store."""
    centres = centres_of(xyz_list)
    sc = store.ensure(uid, centres)
    return {tuple(c): (read_chunk(sc, k), tuple(int(v) for v in sc.center_irc[k]))
            for k, c in enumerate(centres.tolist())}


def ino(path):
    return path.stat().st_ino


# ----------------------------------------------------------------------------- centres

def test_group_centres_sorts_and_shares_duplicate_centres():
    series = np.array([1, 0, 1, 0, 1, 1])
    xyz = np.array([[5, 0, 0], [2, 2, 2], [1, 9, 9], [2, 2, 2], [5, 0, 0], [1, 9, 8]], float)
    centres, offsets, chunk_no = group_centres(series, xyz, 3)
    assert offsets.tolist() == [0, 1, 4, 4]          # series 2 has no candidates
    assert centres[0:1].tolist() == [[2, 2, 2]]
    assert centres[1:4].tolist() == [[1, 9, 8], [1, 9, 9], [5, 0, 0]]
    assert chunk_no.tolist() == [2, 0, 1, 0, 2, 0]
    for i in range(len(series)):                     # each candidate finds its own centre
        assert centres[offsets[series[i]] + chunk_no[i]].tolist() == xyz[i].tolist()


def test_ct_read_clips_and_keeps_geometry(tmp_path):
    vol = ramp_volume((20, 30, 30))
    vol[0, 0, 0], vol[1, 2, 3] = -3024, 3071
    mhd = write_ct(tmp_path, UID_A, hu_a=vol, direction=FLIP_XY)
    ct = Ct.read(mhd)
    assert ct.series_uid == UID_A
    assert ct.hu_a.dtype == np.int16 and ct.hu_a.shape == (20, 30, 30)
    assert ct.hu_a[0, 0, 0] == -1000 and ct.hu_a[1, 2, 3] == 1000
    np.testing.assert_array_equal(ct.hu_a, np.clip(vol, -1000, 1000))
    assert ct.origin_xyz == ORIGIN and ct.vx_size_xyz == SPACING
    np.testing.assert_array_equal(ct.direction_a, np.reshape(FLIP_XY, (3, 3)))
    assert Ct.load(UID_A, tmp_path).hu_a.sum() == ct.hu_a.sum()


# ----------------------------------------------------------------------------- contents

BIG = (40, 60, 70)
CORNERS = [(0, 0, 0), (39, 59, 69), (0, 59, 0), (39, 0, 69), (20, 30, 35), (5, 55, 3)]


def test_file_layout_and_chunks_equal_chunks_cut_from_the_ct(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume(BIG)
    vol[5, 5, 5] = -2000                              # clipped in the store too
    mhd = write_ct(data, UID_A, hu_a=vol, subset="subset4")
    xyz = [center_xyz_of(c) for c in CORNERS] + [center_xyz_of((20, 30, 35))]  # a duplicate
    store = ChunkStore(data, cache)
    got = chunks_by_centre(store, UID_A, xyz)
    assert len(got) == len(CORNERS)
    path = store_dir(cache, WIDTH) / f"{UID_A}.chunks"
    assert os.listdir(cache) == ["chunks-32x48x48"] and os.listdir(path.parent) == [path.name]
    meta, offset, why = read_header(path)
    assert why == "" and offset % 4096 == 0
    assert path.stat().st_size == offset + len(CORNERS) * 32 * 48 * 48 * 2
    assert meta["shape_irc"] == list(BIG) and meta["origin_xyz"] == list(ORIGIN)
    assert meta["source"]["raw"]["size"] == vol.nbytes and meta["width_irc"] == list(WIDTH)
    ct = Ct.read(mhd)
    for (x, y, z), (chunk, irc) in got.items():
        want, want_irc = ct.get_raw_candidate((x, y, z), width_irc=WIDTH)
        assert irc == want_irc and chunk.dtype == np.int16 and chunk.shape == WIDTH
        np.testing.assert_array_equal(chunk, want)
    # corners are shifted inside, the middle is centred
    chunk, irc = got[tuple(center_xyz_of((39, 59, 69)))]
    np.testing.assert_array_equal(chunk, np.clip(vol, -1000, 1000)[8:40, 12:60, 22:70])
    chunk, irc = got[tuple(center_xyz_of((20, 30, 35)))]
    assert chunk[16, 24, 24] == vol[20, 30, 35]


@pytest.mark.parametrize("shape, centre", [((20, 30, 30), (0, 0, 0)), ((20, 30, 30), (19, 29, 29)),
                                           ((20, 30, 30), (3, 28, 1)), ((50, 10, 100), (49, 5, 2))])
def test_volume_smaller_than_a_chunk_is_padded_as_when_cut_from_the_ct(tmp_path, shape, centre):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume(shape)
    mhd = write_ct(data, UID_A, hu_a=vol)
    (chunk, irc), = chunks_by_centre(ChunkStore(data, cache), UID_A,
                                     [center_xyz_of(centre)]).values()
    assert irc == centre
    want, _ = Ct.read(mhd).get_raw_candidate(center_xyz_of(centre))
    np.testing.assert_array_equal(chunk, want)
    starts = window_starts(centre, shape, WIDTH)
    src = tuple(slice(max(s, 0), min(s + w, n)) for s, n, w in zip(starts, shape, WIDTH))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, starts))
    np.testing.assert_array_equal(chunk[dst], vol[src])
    mask = np.ones(WIDTH, bool)
    mask[dst] = False
    assert mask.any() and (chunk[mask] == -1000).all()


NONSYM_SHAPE = (7, 11, 13)                 # index, row, col: all different
NONSYM_SPACING = (0.6, 0.9, 2.5)           # x != y
NONSYM_ORIGIN = (12.5, -40.25, 3.0)


@pytest.mark.parametrize("direction", [FLIP_XY, ROT90Z_FLIPZ])
def test_flipped_and_non_symmetric_directions_match_simpleitk(tmp_path, direction):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = unique_volume(NONSYM_SHAPE)             # each voxel value names its voxel
    mhd = write_ct(data, UID_A, hu_a=vol, origin=NONSYM_ORIGIN, spacing=NONSYM_SPACING,
                   direction=direction)
    img = sitk.ReadImage(str(mhd))
    rng = np.random.default_rng(0)
    voxels = [(0, 0, 0), (6, 10, 12), (1, 2, 3), (5, 0, 12), (0, 9, 1), (3, 5, 6)]
    voxels += [tuple(int(rng.integers(0, n)) for n in NONSYM_SHAPE) for _ in range(20)]
    points = {}
    for irc in voxels:               # a point up to 0.3 voxel off the centre: same voxel
        off = rng.uniform(-0.3, 0.3, 3)
        xyz = img.TransformContinuousIndexToPhysicalPoint(
            tuple(float(v) for v in np.array(irc[::-1]) + off))
        points[xyz] = irc
    width = (3, 5, 7)
    store = ChunkStore(data, cache, width_irc=width)
    got = chunks_by_centre(store, UID_A, list(points))
    sc = ChunkStore(data, cache, width_irc=width).ensure(UID_A, centres_of(list(points)))
    assert sc.shape_irc == NONSYM_SHAPE and sc.direction == img.GetDirection()
    assert sc.origin_xyz == img.GetOrigin() and sc.vx_size_xyz == img.GetSpacing()
    ct = Ct.read(mhd)
    interior = 0
    for xyz, irc in points.items():
        chunk, got_irc = got[tuple(xyz)]
        assert got_irc == irc == img.TransformPhysicalPointToIndex(xyz)[::-1]
        starts = window_starts(irc, NONSYM_SHAPE, width)
        assert chunk[tuple(c - s for c, s in zip(irc, starts))] == img.GetPixel(irc[::-1])
        np.testing.assert_array_equal(chunk, ct.get_raw_candidate(xyz, width_irc=width)[0])
        interior += all(w // 2 <= c < n - w // 2 for c, n, w in zip(irc, NONSYM_SHAPE, width))
    assert interior >= 5


def test_centre_outside_the_volume_names_series_and_csv_and_writes_nothing(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A, hu_a=ramp_volume(BIG))
    store = ChunkStore(data, cache, candidates_file="/x/candidates.csv")
    with pytest.raises(LunaInputError) as e:
        store.ensure(UID_A, centres_of([center_xyz_of((1, 1, 1)), center_xyz_of((40, 0, 0))]))
    assert UID_A in str(e.value) and "/x/candidates.csv" in str(e.value)
    assert "\n" not in str(e.value)
    assert not store.dir.exists() or os.listdir(store.dir) == []


# ----------------------------------------------------------------------------- reading

def test_each_sample_is_one_positioned_read_of_exactly_its_chunk(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A, hu_a=ramp_volume(BIG))
    centres = centres_of([center_xyz_of(c) for c in CORNERS])
    sc = ChunkStore(data, cache).ensure(UID_A, centres)
    reads, advice = [], []
    real_preadv, real_fadvise = os.preadv, os.posix_fadvise
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: reads.append(
        (sum(memoryview(b).nbytes for b in bufs), off)) or real_preadv(fd, bufs, off))
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, how: advice.append(how)
                        or real_fadvise(fd, off, n, how))
    cs.close_files()
    for k in (3, 0, 5):
        read_chunk(sc, k)
    assert reads == [(sc.chunk_nbytes, sc.data_offset + k * sc.chunk_nbytes) for k in (3, 0, 5)]
    assert advice == [os.POSIX_FADV_RANDOM]       # once, when the file is opened
    cs.close_files()


def test_open_files_are_bounded_and_the_store_is_picklable(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for k, uid in enumerate((UID_A, UID_B, UID_C)):
        write_ct(data, uid, subset=f"subset{k}")
    monkeypatch.setattr(cs, "MAX_OPEN_FILES", 2)
    cs.close_files()
    store = ChunkStore(data, cache)
    centres = centres_of([center_xyz_of((1, 2, 3))])
    for uid in (UID_A, UID_B, UID_C):
        read_chunk(store.ensure(uid, centres), 0)
        assert len(cs._FILES) <= 2
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(read_chunk(clone.ensure(UID_A, centres), 0),
                                  read_chunk(store.ensure(UID_A, centres), 0))
    cs.close_files()


def test_truncated_store_is_a_one_line_error_and_is_rebuilt(tmp_path, caplog):
    data, cache = tmp_path / "data", tmp_path / "cache"
    mhd = write_ct(data, UID_A, hu_a=ramp_volume(BIG))
    centres = centres_of([center_xyz_of(c) for c in CORNERS])
    sc = ChunkStore(data, cache).ensure(UID_A, centres)
    good = read_chunk(sc, 5).copy()
    path = store_dir(cache) / f"{UID_A}.chunks"
    size = path.stat().st_size

    # cut short under a reader that has it open: an error naming it, never garbage
    cs.close_files()
    read_chunk(sc, 0)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(LunaInputError) as e:
        read_chunk(sc, 5)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    cs.close_files()

    # the next look at it rebuilds it, and says so on one line
    with caplog.at_level(logging.WARNING, logger="luna_core.data.chunkstore"):
        sc2 = ChunkStore(data, cache).ensure(UID_A, centres)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: chunk store file is shorter than its header says (truncated copy or full "
        "disk?): rebuilding it"]
    assert path.stat().st_size == size
    np.testing.assert_array_equal(read_chunk(sc2, 5), good)

    # truncated inside its header, with the source gone: a one-line error naming both
    with open(path, "r+b") as f:
        f.truncate(100)
    mhd.unlink()
    with pytest.raises(LunaInputError) as e:
        ChunkStore(data, cache).ensure(UID_A, centres)
    assert UID_A in str(e.value) and f"{path} is truncated" in str(e.value)
    assert "\n" not in str(e.value)
    cs.close_files()


# ----------------------------------------------------------------------------- rebuilds

def _three_series(data):
    xyz = {}
    for k, uid in enumerate((UID_A, UID_B, UID_C)):
        write_ct(data, uid, hu_a=ramp_volume((20, 30, 30)) + k, subset=f"subset{k}")
        xyz[uid] = [center_xyz_of(c) for c in [(1, 2, 3), (10, 15, 15), (19, 0, 29)]]
    return {uid: centres_of(v) for uid, v in xyz.items()}


def _inodes(cache):
    return {uid: ino(store_dir(cache) / f"{uid}.chunks") for uid in (UID_A, UID_B, UID_C)}


def _touch_later(p):
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_changed_raw_mhd_or_candidate_rebuilds_that_series_only(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    centres = _three_series(data)
    assert prepare_store(data, cache, centres) == 3
    before = _inodes(cache)
    assert prepare_store(data, cache, centres) == 0 and _inodes(cache) == before

    # B's .raw: same size, new content and mtime
    raw = data / "subset1" / f"{UID_B}.raw"
    raw.write_bytes(np.full((20, 30, 30), 123, "<i2").tobytes())
    _touch_later(raw)
    assert ChunkStore(data, cache).state(UID_B, centres[UID_B]) == "stale"
    assert prepare_store(data, cache, centres) == 1
    after = _inodes(cache)
    assert after[UID_B] != before[UID_B] and after[UID_A] == before[UID_A]
    sc = ChunkStore(data, cache).ensure(UID_B, centres[UID_B])
    assert (read_chunk(sc, 1)[read_chunk(sc, 1) != -1000] == 123).all()

    # C's candidates: one centre moved
    moved = dict(centres)
    moved[UID_C] = centres_of([center_xyz_of(c) for c in [(1, 2, 3), (10, 15, 16), (19, 0, 29)]])
    assert prepare_store(data, cache, moved) == 1
    again = _inodes(cache)
    assert again[UID_C] != after[UID_C] and {u: again[u] for u in (UID_A, UID_B)} == {
        u: after[u] for u in (UID_A, UID_B)}
    sc = ChunkStore(data, cache).ensure(UID_C, moved[UID_C])
    assert sc.center_irc[1].tolist() == [10, 15, 16]


@pytest.mark.parametrize("field, value, origin, spacing", [
    ("Offset", "-12 -20 -31", (-12.0, -20.0, -31.0), SPACING),
    ("ElementSpacing", "0.25 0.50 2.5", ORIGIN, (0.25, 0.5, 2.5)),
])
def test_rebuilt_when_the_mhd_changes(tmp_path, field, value, origin, spacing):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume((20, 30, 30))
    mhd = write_ct(data, UID_A, hu_a=vol)
    irc = (10, 20, 5)
    xyz = center_xyz_of(irc, origin=origin, spacing=spacing)   # a point of the new geometry
    centres = centres_of([xyz])
    old = ChunkStore(data, cache, width_irc=(3, 5, 7)).ensure(UID_A, centres)
    assert old.center_irc[0].tolist() != list(irc)
    size = mhd.stat().st_size
    edit_mhd(mhd, **{field: value})          # same size: only content and mtime differ
    assert mhd.stat().st_size == size
    sc = ChunkStore(data, cache, width_irc=(3, 5, 7)).ensure(UID_A, centres)
    assert sc.file_id != old.file_id
    assert sc.origin_xyz == origin and sc.vx_size_xyz == spacing
    assert sc.center_irc[0].tolist() == list(irc) and read_chunk(sc, 0)[1, 2, 3] == vol[irc]
    assert ChunkStore(data, cache, width_irc=(3, 5, 7)).ensure(UID_A, centres).file_id == sc.file_id


def test_rebuilt_when_the_format_or_width_changes(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A)
    centres = centres_of([center_xyz_of((5, 6, 7))])
    sc = ChunkStore(data, cache).ensure(UID_A, centres)
    monkeypatch.setattr(cs, "STORE_FORMAT", cs.STORE_FORMAT + 1)
    assert ChunkStore(data, cache).state(UID_A, centres) == "stale"
    assert prepare_store(data, cache, {UID_A: centres}) == 1
    newer = ChunkStore(data, cache).ensure(UID_A, centres)
    assert newer.file_id != sc.file_id
    monkeypatch.setattr(cs, "STORE_FORMAT", cs.STORE_FORMAT - 1)   # newer is not trusted either
    assert ChunkStore(data, cache).ensure(UID_A, centres).file_id != newer.file_id

    # another width is another store; a file of one width moved under another is rebuilt
    small = ChunkStore(data, cache, width_irc=(4, 4, 4))
    assert small.state(UID_A, centres) == "missing"
    big_file = store_dir(cache) / f"{UID_A}.chunks"
    small.dir.mkdir(parents=True)
    os.link(big_file, small.path(UID_A))
    assert small.state(UID_A, centres) == "stale"
    sc4 = small.ensure(UID_A, centres)
    assert read_chunk(sc4, 0).shape == (4, 4, 4) and json.loads(
        json.dumps(read_header(small.path(UID_A))[0]["width_irc"])) == [4, 4, 4]


def test_store_used_when_the_source_is_deleted_and_rechecked_only_when_asked(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    mhd = write_ct(data, UID_A)
    centres = centres_of([center_xyz_of((5, 6, 7))])
    store = ChunkStore(data, cache)
    first = store.ensure(UID_A, centres)
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(np.zeros((20, 30, 30), "<i2").tobytes())
    _touch_later(raw)
    assert store.ensure(UID_A, centres) == first             # checked once per object
    rebuilt = store.ensure(UID_A, centres, recheck=True)
    assert rebuilt.file_id != first.file_id
    mhd.unlink()
    raw.unlink()
    assert ChunkStore(data, cache).ensure(UID_A, centres).file_id == rebuilt.file_id
    with pytest.raises(LunaInputError, match=UID_B):
        ChunkStore(data, cache).ensure(UID_B, centres)


# ----------------------------------------------------------------------------- prepcache

def test_prepare_store_pool_builds_each_once_and_reports_progress(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    centres = _three_series(data)
    calls = []
    assert prepare_store(data, cache, centres, num_workers=2,
                         progress=lambda done, total: calls.append((done, total))) == 3
    assert calls[0] == (0, 3) and calls[-1] == (3, 3) and len(calls) == 4
    assert sorted(os.listdir(store_dir(cache))) == sorted(
        f"{u}.chunks" for u in (UID_A, UID_B, UID_C))
    calls.clear()
    (store_dir(cache) / f"{UID_B}.chunks").unlink()
    assert prepare_store(data, cache, centres, num_workers=2,
                         progress=lambda d, t: calls.append((d, t))) == 1
    assert calls == [(2, 3), (3, 3)]


def test_prepare_store_pool_reports_bad_input_and_leaves_nothing(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A, subset="subset0")
    mhd = write_ct(data, UID_B, subset="subset1")
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:100])
    centres = centres_of([center_xyz_of((5, 6, 7))])
    with pytest.raises(LunaInputError) as e:
        prepare_store(data, cache, {UID_A: centres, UID_B: centres}, num_workers=2)
    assert e.value.path == str(raw)
    assert [p for p in store_dir(cache).iterdir() if UID_B in p.name] == []


KILLED_PREPCACHE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from luna_core.data import chunkstore as cs
    data, cache = sys.argv[1], sys.argv[2]
    centres = {u: np.load(sys.argv[3])[3 * i:3 * i + 3] for i, u in enumerate(sys.argv[4:7])}
    real = cs.cut_chunk
    calls = [0]
    def cut_then_die(*a, **k):       # the third series dies half written
        calls[0] += 1
        if calls[0] == 8:
            print("half written", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    cs.cut_chunk = cut_then_die
    cs.prepare_store(data, cache, centres)
""")


def test_a_killed_prepcache_resumes_keeping_the_finished_series(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    centres = _three_series(data)
    uids = [UID_A, UID_B, UID_C]
    np.save(tmp_path / "centres.npy", np.concatenate([centres[u] for u in uids]))
    child = subprocess.run([sys.executable, "-c", KILLED_PREPCACHE, str(data), str(cache),
                            str(tmp_path / "centres.npy"), *uids],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL and child.stdout == "half written\n", child.stderr
    left = sorted(os.listdir(store_dir(cache)))
    assert f"{UID_A}.chunks" in left and f"{UID_B}.chunks" in left
    assert any(UID_C in name and ".tmp-" in name for name in left)   # its half-written temp
    kept = {u: ino(store_dir(cache) / f"{u}.chunks") for u in (UID_A, UID_B)}

    assert prepare_store(data, cache, centres) == 1       # only the unfinished one
    assert sorted(os.listdir(store_dir(cache))) == sorted(f"{u}.chunks" for u in uids)
    assert {u: ino(store_dir(cache) / f"{u}.chunks") for u in (UID_A, UID_B)} == kept
    mhd = data / "subset2" / f"{UID_C}.mhd"
    sc = ChunkStore(data, cache).ensure(UID_C, centres[UID_C])
    for k, xyz in enumerate(centres[UID_C].tolist()):
        np.testing.assert_array_equal(read_chunk(sc, k), Ct.read(mhd).get_raw_candidate(xyz)[0])


def test_series_centres_of_a_candidate_list(tmp_path):
    from luna_core.data.candidates import CandidateInfo

    cands = [CandidateInfo(False, 0.0, UID_B, (3.0, 0.0, 0.0)),
             CandidateInfo(True, 5.0, UID_A, (1.0, 2.0, 3.0)),
             CandidateInfo(False, 0.0, UID_B, (1.0, 0.0, 0.0)),
             CandidateInfo(False, 0.0, UID_B, (3.0, 0.0, 0.0))]
    got = series_centres(cands)
    assert sorted(got) == [UID_A, UID_B]
    assert got[UID_B].tolist() == [[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]
    assert got[UID_A].tolist() == [[1.0, 2.0, 3.0]]
