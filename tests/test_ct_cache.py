import json
import os
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

from luna_core.data import ct as ct_mod
from luna_core.data.ct import Ct, CtCache, prepare_cache, window_starts
from luna_core.data.geometry import irc2xyz
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


@pytest.mark.parametrize("field, value, origin, spacing", [
    ("Offset", "-12 -20 -31", (-12.0, -20.0, -31.0), SPACING),
    ("ElementSpacing", "0.25 0.50 2.5", ORIGIN, (0.25, 0.5, 2.5)),
])
def test_rebuilt_when_mhd_changes(tmp_path, field, value, origin, spacing):
    data, cache = tmp_path / "data", tmp_path / "cache"
    vol = ramp_volume((20, 30, 30))
    mhd = write_ct(data, UID_A, hu_a=vol)
    CtCache(data, cache).ensure(UID_A)
    npy, js = _npy_json(cache, UID_A)
    ino, size = npy.stat().st_ino, mhd.stat().st_size

    # same .raw, same .mhd size: only the header's content and mtime differ
    edit_mhd(mhd, **{field: value})
    assert mhd.stat().st_size == size
    assert not CtCache(data, cache).is_fresh(UID_A)
    cc = CtCache(data, cache)
    geom = cc.ensure(UID_A)
    assert npy.stat().st_ino != ino
    assert geom.origin_xyz == origin and geom.vx_size_xyz == spacing
    meta = json.loads(js.read_text())
    assert meta["origin_xyz"] == list(origin) and meta["vx_size_xyz"] == list(spacing)
    # the new geometry is the one chunks are cut with
    irc = (10, 20, 5)
    xyz = center_xyz_of(irc, origin=origin, spacing=spacing)
    chunk, center = cc.get_chunk(UID_A, xyz, width_irc=(3, 5, 7))
    assert center == irc and chunk[1, 2, 3] == vol[irc]
    assert CtCache(data, cache).get_chunk(UID_A, xyz)[1] == irc
    # and from now on it is fresh: not rebuilt again
    ino = npy.stat().st_ino
    assert CtCache(data, cache).is_fresh(UID_A)
    CtCache(data, cache).ensure(UID_A)
    assert npy.stat().st_ino == ino


def test_rebuilt_when_cache_format_changes(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_ct(data, UID_A)
    CtCache(data, cache).ensure(UID_A)
    npy, js = _npy_json(cache, UID_A)
    ino = npy.stat().st_ino
    old = json.loads(js.read_text())["format"]
    assert old == ct_mod.CACHE_FORMAT

    monkeypatch.setattr(ct_mod, "CACHE_FORMAT", old + 1)
    assert not CtCache(data, cache).is_fresh(UID_A)
    assert prepare_cache(data, cache, [UID_A]) == 1          # prepcache sees it as stale
    assert npy.stat().st_ino != ino
    assert json.loads(js.read_text())["format"] == old + 1
    ino = npy.stat().st_ino
    assert prepare_cache(data, cache, [UID_A]) == 0
    CtCache(data, cache).ensure(UID_A)
    assert npy.stat().st_ino == ino

    # a cache of a newer format is not trusted by an older program either
    monkeypatch.setattr(ct_mod, "CACHE_FORMAT", old)
    CtCache(data, cache).ensure(UID_A)
    assert npy.stat().st_ino != ino and json.loads(js.read_text())["format"] == old


NONSYM_SHAPE = (7, 11, 13)                 # index, row, col: all different
NONSYM_SPACING = (0.6, 0.9, 2.5)           # x != y
NONSYM_ORIGIN = (12.5, -40.25, 3.0)


def test_non_symmetric_direction_and_unequal_spacing_match_simpleitk(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    d = np.reshape(ROT90Z_FLIPZ, (3, 3))
    assert not np.array_equal(d, d.T) and np.allclose(d @ d.T, np.eye(3))
    vol = unique_volume(NONSYM_SHAPE)             # each voxel value names its voxel
    mhd = write_ct(data, UID_A, hu_a=vol, origin=NONSYM_ORIGIN, spacing=NONSYM_SPACING,
                   direction=ROT90Z_FLIPZ)
    img = sitk.ReadImage(str(mhd))
    assert img.GetSize() == NONSYM_SHAPE[::-1]

    geom = CtCache(data, cache).ensure(UID_A)
    cached = CtCache(data, cache).ensure(UID_A)  # read back from the .json
    ct = Ct.read(mhd)
    for g in (geom, cached):
        assert g.shape_irc == NONSYM_SHAPE
        assert g.origin_xyz == img.GetOrigin() and g.vx_size_xyz == img.GetSpacing()
        assert g.direction == img.GetDirection()
    assert ct.origin_xyz == img.GetOrigin() and ct.vx_size_xyz == img.GetSpacing()
    assert tuple(ct.direction_a.ravel()) == img.GetDirection()
    np.testing.assert_array_equal(CtCache(data, cache).volume(UID_A), vol)

    # voxel <-> world as SimpleITK does it (its index is (x=col, y=row, z=index))
    rng = np.random.default_rng(0)
    interior = 0
    voxels = [(0, 0, 0), (6, 10, 12), (1, 2, 3), (5, 0, 12), (0, 9, 1), (3, 5, 6)]
    voxels += [tuple(int(rng.integers(0, n)) for n in NONSYM_SHAPE) for _ in range(20)]
    for irc in voxels:
        want = img.TransformIndexToPhysicalPoint(irc[::-1])
        got = irc2xyz(irc, cached.origin_xyz, cached.vx_size_xyz, cached.direction_a)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ct.irc2xyz(irc), want, rtol=0, atol=1e-9)
        # a point up to 0.3 voxel off the centre along each voxel axis: same voxel
        off = rng.uniform(-0.3, 0.3, 3)
        xyz = img.TransformContinuousIndexToPhysicalPoint(
            tuple(float(v) for v in np.array(irc[::-1]) + off))
        sitk_irc = img.TransformPhysicalPointToIndex(xyz)[::-1]
        assert sitk_irc == irc
        assert cached.xyz2irc(xyz) == irc and ct.xyz2irc(xyz) == irc
        assert tuple(cached.xyz2irc_array(np.array([xyz]))[0]) == irc

        # the chunk around that point has SimpleITK's voxel value at its centre
        want_hu = img.GetPixel(img.TransformPhysicalPointToIndex(xyz))
        width = (3, 5, 7)
        chunk, center = CtCache(data, cache).get_chunk(UID_A, xyz, width_irc=width)
        assert center == irc
        starts = window_starts(irc, NONSYM_SHAPE, width)
        assert chunk[tuple(c - s for c, s in zip(irc, starts))] == want_hu
        if all(w // 2 <= c < n - w // 2 for c, n, w in zip(irc, NONSYM_SHAPE, width)):
            assert chunk[1, 2, 3] == want_hu          # interior: exactly at the centre
            interior += 1
        raw_chunk, raw_center = ct.get_raw_candidate(xyz, width_irc=width)
        assert raw_center == irc
        np.testing.assert_array_equal(raw_chunk, chunk)
    assert interior >= 5


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
