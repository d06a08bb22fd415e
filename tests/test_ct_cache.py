import json
import os
import pickle

import numpy as np
import pytest

from luna_core import ct as ct_mod
from luna_core.ct import Ct, CtCache, prepare_cache, window_starts
from luna_core.errors import LunaInputError

from .lunadata import FLIP_XY, UID_A, UID_B, UID_C, center_xyz_of, ramp_volume, write_ct

ORIGIN, SPACING = (-10.0, -20.0, -30.0), (0.75, 0.75, 2.5)


def _npy_json(cache_dir, uid):
    return cache_dir / "ct" / f"{uid}.npy", cache_dir / "ct" / f"{uid}.json"


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


def test_cache_files_and_contents(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume((20, 30, 30))
    vol[5, 5, 5] = -2000
    write_ct(data, UID_A, hu_a=vol, subset="subset4")
    geom = CtCache(data, cache).ensure(UID_A)
    npy, js = _npy_json(cache, UID_A)
    assert sorted(os.listdir(cache / "ct")) == sorted([npy.name, js.name])
    stored = np.load(npy)
    assert stored.dtype == np.int16 and stored.shape == (20, 30, 30)
    np.testing.assert_array_equal(stored, np.clip(vol, -1000, 1000))
    np.testing.assert_array_equal(np.load(npy, mmap_mode="r"), stored)
    meta = json.loads(js.read_text())
    assert meta["shape_irc"] == [20, 30, 30] and meta["origin_xyz"] == list(ORIGIN)
    assert meta["source"]["raw"]["size"] == 20 * 30 * 30 * 2
    assert geom.shape_irc == (20, 30, 30) and geom.vx_size_xyz == SPACING


def test_rebuilt_when_raw_changes_and_not_otherwise(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    mhd = write_ct(data, UID_A)
    CtCache(data, cache).ensure(UID_A)
    npy, js = _npy_json(cache, UID_A)
    before = (npy.stat().st_ino, npy.stat().st_mtime_ns, js.read_text())

    # unchanged sources: nothing is rewritten, even by a new CtCache
    CtCache(data, cache).ensure(UID_A)
    assert (npy.stat().st_ino, npy.stat().st_mtime_ns, js.read_text()) == before

    # same size, new content and mtime: rebuilt
    raw = mhd.with_suffix(".raw")
    new = np.full((20, 30, 30), 123, dtype="<i2")
    raw.write_bytes(new.tobytes())
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache2 = CtCache(data, cache)
    cache2.ensure(UID_A)
    assert npy.stat().st_ino != before[0]
    assert (np.load(npy) == 123).all()
    chunk, _ = cache2.get_chunk(UID_A, center_xyz_of((10, 15, 15)))
    assert (chunk[chunk != -1000] == 123).all()

    # a deleted or truncated .npy is rebuilt as well
    npy.unlink()
    CtCache(data, cache).ensure(UID_A)
    assert (np.load(npy) == 123).all()
    with open(npy, "r+b") as f:
        f.truncate(1000)
    CtCache(data, cache).ensure(UID_A)
    assert np.load(npy).shape == (20, 30, 30)
    # and nothing but the two files is left behind
    assert sorted(os.listdir(cache / "ct")) == sorted([npy.name, js.name])


def test_ensure_rechecks_only_when_asked(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    mhd = write_ct(data, UID_A)
    cc = CtCache(data, cache)
    g1 = cc.ensure(UID_A)
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(np.zeros((20, 30, 30), "<i2").tobytes())
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cc.ensure(UID_A) == g1                      # memoised for this object
    assert cc.ensure(UID_A, recheck=True).npy_id != g1.npy_id


def test_cache_used_when_source_deleted(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    mhd = write_ct(data, UID_A)
    CtCache(data, cache).ensure(UID_A)
    mhd.unlink()
    mhd.with_suffix(".raw").unlink()
    assert CtCache(data, cache).ensure(UID_A).shape_irc == (20, 30, 30)
    with pytest.raises(LunaInputError, match=UID_B):
        CtCache(data, cache).ensure(UID_B)


BIG = (40, 60, 70)


@pytest.fixture
def big_cache(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume(BIG)
    write_ct(data, UID_A, hu_a=vol)
    return CtCache(data, cache), vol


@pytest.mark.parametrize("corner", [(0, 0, 0), (39, 59, 69), (0, 59, 0), (39, 0, 69)])
def test_chunk_at_corners_is_shifted_inside(big_cache, corner):
    cc, vol = big_cache
    chunk, center = cc.get_chunk(UID_A, center_xyz_of(corner))
    assert center == corner
    assert chunk.shape == (32, 48, 48) and chunk.dtype == np.int16
    sl = tuple(slice(0, w) if c < n // 2 else slice(n - w, n)
               for c, n, w in zip(corner, BIG, (32, 48, 48)))
    np.testing.assert_array_equal(chunk, vol[sl])


def test_chunk_in_the_middle_is_centred(big_cache):
    cc, vol = big_cache
    chunk, center = cc.get_chunk(UID_A, center_xyz_of((20, 30, 35)), dtype=np.float32)
    assert chunk.dtype == np.float32
    np.testing.assert_array_equal(chunk, vol[4:36, 6:54, 11:59].astype(np.float32))
    assert chunk[16, 24, 24] == vol[20, 30, 35]


@pytest.mark.parametrize("center", [(0, 0, 0), (19, 29, 29), (10, 15, 15), (3, 28, 1)])
def test_volume_smaller_than_chunk_is_padded(tmp_path, center):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume((20, 30, 30))
    write_ct(data, UID_A, hu_a=vol)
    chunk, got_center = CtCache(data, cache).get_chunk(UID_A, center_xyz_of(center))
    assert got_center == center
    assert chunk.shape == (32, 48, 48)
    starts = window_starts(center, (20, 30, 30), (32, 48, 48))
    inner = tuple(slice(-s, -s + n) for s, n in zip(starts, (20, 30, 30)))
    np.testing.assert_array_equal(chunk[inner], vol)
    mask = np.ones(chunk.shape, bool)
    mask[inner] = False
    assert (chunk[mask] == -1000).all() and mask.sum() == 32 * 48 * 48 - 20 * 30 * 30


def test_mixed_axes_pad_and_shift(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume((50, 10, 100))
    write_ct(data, UID_A, hu_a=vol)
    chunk, _ = CtCache(data, cache).get_chunk(UID_A, center_xyz_of((49, 5, 2)))
    assert chunk.shape == (32, 48, 48)
    # index: shifted to 18..50; row: whole volume padded around; col: shifted to 0..48
    s = window_starts((49, 5, 2), (50, 10, 100), (32, 48, 48))
    assert s[0] == 18 and s[2] == 0 and s[1] <= 0
    np.testing.assert_array_equal(chunk[:, -s[1]:-s[1] + 10, :], vol[18:50, :, 0:48])


def test_flipped_direction_chunk_centre(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume(BIG)
    write_ct(data, UID_C, hu_a=vol, direction=FLIP_XY)
    xyz = center_xyz_of((20, 30, 35), direction=FLIP_XY)
    chunk, center = CtCache(data, cache).get_chunk(UID_C, xyz)
    assert center == (20, 30, 35) and chunk[16, 24, 24] == vol[20, 30, 35]
    ct_chunk, ct_center = Ct.load(UID_C, data).get_raw_candidate(xyz)
    assert ct_center == center
    np.testing.assert_array_equal(ct_chunk, chunk)


def test_centre_outside_volume(big_cache):
    cc, _ = big_cache
    with pytest.raises(LunaInputError) as e:
        cc.get_chunk(UID_A, center_xyz_of((40, 0, 0)), candidates_file="/x/candidates.csv")
    assert UID_A in str(e.value) and "/x/candidates.csv" in str(e.value)


def test_picklable_and_bounded_maps(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for k, uid in enumerate((UID_A, UID_B, UID_C)):
        write_ct(data, uid, subset=f"subset{k}")
    monkeypatch.setattr(ct_mod, "MAX_OPEN_VOLUMES", 2)
    ct_mod.close_volumes()
    cc = CtCache(data, cache)
    for uid in (UID_A, UID_B, UID_C):
        cc.get_chunk(uid, center_xyz_of((1, 2, 3)))
        assert len(ct_mod._VOLUMES) <= 2
    clone = pickle.loads(pickle.dumps(cc))
    a, _ = clone.get_chunk(UID_A, center_xyz_of((1, 2, 3)))
    b, _ = cc.get_chunk(UID_A, center_xyz_of((1, 2, 3)))
    np.testing.assert_array_equal(a, b)
    ct_mod.close_volumes()


def test_prepare_cache_pool_builds_each_once(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    uids = (UID_A, UID_B, UID_C)
    for k, uid in enumerate(uids):
        write_ct(data, uid, subset=f"subset{k}")
    calls = []
    n = prepare_cache(data, cache, [UID_A, UID_B, UID_A, UID_C, UID_B], num_workers=2,
                      progress=lambda done, total: calls.append((done, total)))
    assert n == 3
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    assert sorted(os.listdir(cache / "ct")) == sorted(
        f"{u}.{ext}" for u in uids for ext in ("npy", "json"))
    assert prepare_cache(data, cache, uids, num_workers=2) == 0
    calls.clear()
    (cache / "ct" / f"{UID_B}.json").unlink()
    assert prepare_cache(data, cache, uids, num_workers=1,
                         progress=lambda d, t: calls.append((d, t))) == 1
    assert calls == [(2, 3), (3, 3)]


def test_prepare_cache_pool_reports_bad_input(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A, subset="subset0")
    mhd = write_ct(data, UID_B, subset="subset1")
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(LunaInputError) as e:
        prepare_cache(data, cache, [UID_A, UID_B], num_workers=2)
    assert str(raw) in str(e.value) and e.value.path == str(raw)
    leftovers = [p for p in (cache / "ct").iterdir() if UID_B in p.name] \
        if (cache / "ct").exists() else []
    assert leftovers == []
