import os
import pickle
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch.utils.data import DataLoader

from luna_core.data import chunkstore
from luna_core.data.candidates import clear_cache
from luna_core.data.ct import Ct, find_mhd, window_starts
from luna_core.data.dsets import LunaDataset
from luna_core.errors import LunaInputError

from .lunadata import (
    ROT90Z_FLIPZ,
    UID_A,
    make_dataset_dir,
    ramp_volume,
    unique_volume,
    write_annotations,
    write_candidates,
    write_ct,
)


@pytest.fixture
def data(tmp_path):
    clear_cache()
    root, uids, cands = make_dataset_dir(tmp_path / "data", n_series=2, per_series=15)
    return root, tmp_path / "cache", uids, cands


def test_sample_shapes_dtypes_and_one_hot(data):
    root, cache, uids, cands = data
    ds = LunaDataset(val_stride=10, is_val=False, data_dir=root, cache_dir=cache)
    assert len(ds) == 27
    chunk, label, uid, center = ds[0]
    assert chunk.shape == (1, 32, 48, 48) and chunk.dtype == torch.float32
    assert label.dtype == torch.long and label.shape == (2,)
    assert center.dtype == torch.long and center.shape == (3,)
    assert isinstance(uid, str) and uid in uids
    for i in range(len(ds)):
        c = ds.candidate_list[i]
        _, label, uid, _ = ds[i]
        assert label.tolist() == ([0, 1] if c.is_nodule else [1, 0])
        assert uid == c.series_uid
    assert ds.pos_count == sum(c.is_nodule for c in ds.candidate_list)
    assert ds.pos_count + ds.neg_count == len(ds)
    label = ds[0][1]
    label[0] = 7                              # a caller may modify what it gets
    assert ds[0][1].tolist() in ([0, 1], [1, 0])
    assert ds[-1][2] == ds.candidate_list[-1].series_uid
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_chunk_content_matches_volume(data):
    root, cache, uids, _ = data
    ds = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache)
    vol = ramp_volume((20, 30, 30))
    cts = {uid: Ct.read(find_mhd(root, uid)) for uid in uids}
    for i in range(len(ds)):
        chunk, _, uid, center = ds[i]
        ref, ref_center = cts[uid].get_raw_candidate(ds.candidate_list[i].center_xyz)
        assert tuple(center.tolist()) == ref_center
        np.testing.assert_array_equal(chunk[0].numpy(), ref.astype(np.float32))
        # the small test volume sits inside the padded chunk, unchanged
        assert (chunk == -1000).sum() == 32 * 48 * 48 - 20 * 30 * 30
        assert chunk.sum().item() == float(vol.astype(np.int64).sum()
                                           - 1000 * (32 * 48 * 48 - 20 * 30 * 30))


def test_serial_and_threaded_paths_agree(data):
    root, cache, _, _ = data
    ds = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache, width_irc=(8, 10, 12))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [ds[i][0] for i in range(len(ds))]
        torch.set_num_threads(2)
        two = [ds[i][0] for i in range(len(ds))]
    finally:
        torch.set_num_threads(threads)
    assert all(a.shape == (1, 8, 10, 12) and torch.equal(a, b) for a, b in zip(one, two))


def test_int16_samples_hold_the_same_values(data):
    root, cache, _, _ = data
    f32 = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache)
    i16 = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache, chunk_dtype=torch.int16)
    for i in range(len(f32)):
        a, b = f32[i], i16[i]
        assert b[0].dtype == torch.int16 and b[0].shape == (1, 32, 48, 48)
        assert torch.equal(a[0], b[0].float()) and torch.equal(a[3], b[3])
    with pytest.raises(ValueError, match="chunk_dtype"):
        LunaDataset(data_dir=root, cache_dir=cache, chunk_dtype=torch.float16)


def test_training_and_validation_share_each_series_store(data):
    root, cache, uids, _ = data
    val = LunaDataset(val_stride=10, is_val=True, data_dir=root, cache_dir=cache)
    for i in range(len(val)):
        val[i]
    files = sorted((cache / "chunks-32x48x48").iterdir())
    before = [p.stat().st_ino for p in files]
    trn = LunaDataset(val_stride=10, is_val=False, data_dir=root, cache_dir=cache)
    for i in range(len(trn)):
        trn[i]
    assert sorted((cache / "chunks-32x48x48").iterdir()) == files
    assert [p.stat().st_ino for p in files] == before          # nothing rebuilt
    assert len(files) == len(uids)


def test_split_and_fingerprint(data):
    root, cache, _, cands = data
    trn = LunaDataset(val_stride=10, is_val=False, data_dir=root, cache_dir=cache)
    val = LunaDataset(val_stride=10, is_val=True, data_dir=root, cache_dir=cache)
    assert len(trn) + len(val) == len(cands) and len(val) == 3
    assert val.candidate_list[0].is_nodule           # nodules sort first
    assert len(trn.fingerprint) == 64
    assert trn.fingerprint != val.fingerprint
    again = LunaDataset(val_stride=10, is_val=False, data_dir=root, cache_dir=cache)
    assert again.fingerprint == trn.fingerprint


def test_fingerprint_changes_with_data(data):
    root, cache, uids, cands = data
    fp = LunaDataset(data_dir=root, cache_dir=cache).fingerprint
    write_candidates(root, cands[:-1])
    st = (root / "candidates.csv").stat()
    os.utime(root / "candidates.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert LunaDataset(data_dir=root, cache_dir=cache).fingerprint != fp


def test_cache_filled_lazily(data):
    root, cache, uids, _ = data
    ds = LunaDataset(data_dir=root, cache_dir=cache)
    assert not cache.exists()
    ds[0]
    assert os.listdir(cache / "chunks-32x48x48") == [f"{ds.candidate_list[0].series_uid}.chunks"]


def test_pickle_round_trip(data):
    root, cache, _, _ = data
    ds = LunaDataset(data_dir=root, cache_dir=cache)
    first = ds[3]
    clone = pickle.loads(pickle.dumps(ds))
    chunkstore.close_files()
    again = clone[3]
    assert torch.equal(first[0], again[0]) and torch.equal(first[3], again[3])
    assert len(pickle.dumps(clone)) < 200_000
    assert "candidate_list" not in str(pickle.dumps(ds))
    assert clone.candidate_list == ds.candidate_list
    assert clone.fingerprint == ds.fingerprint
    assert (clone.pos_count, clone.neg_count, len(clone)) == (ds.pos_count, ds.neg_count, len(ds))


def test_no_warning_from_samples(data):
    root, cache, _, _ = data
    ds = LunaDataset(data_dir=root, cache_dir=cache, width_irc=(8, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(len(ds)):
            assert ds[i][0].shape == (1, 8, 8, 8)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(data, context):
    root, cache, _, _ = data
    ds = LunaDataset(data_dir=root, cache_dir=cache)
    dl = DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context=context)
    batches = list(dl)
    assert sum(len(b[0]) for b in batches) == len(ds)
    chunk, label, uids, centers = batches[0]
    assert chunk.shape == (8, 1, 32, 48, 48) and label.shape == (8, 2)
    assert centers.shape == (8, 3) and len(uids) == 8
    assert torch.equal(chunk[2], ds[2][0])


@pytest.mark.parametrize("workers, dtype", [(0, torch.int16), (0, torch.float32),
                                            (1, torch.int16)])
def test_loader_batches_are_read_whole_and_equal_stacked_samples(data, workers, dtype):
    from luna_core.data.loader import make_loader, shutdown_workers

    root, cache, _, _ = data
    ds = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache, chunk_dtype=dtype)
    order = [7, 0, 29, 3, 3, 18, 11, 25, 1, 6, 22]
    dl = make_loader(ds, order, batch_size=4, num_workers=workers, pin_memory=False)
    try:
        batches = list(dl)
    finally:
        shutdown_workers(dl)
    assert [len(b[0]) for b in batches] == [4, 4, 3]
    for b, rows in zip(batches, (order[0:4], order[4:8], order[8:])):
        want = torch.utils.data.default_collate([ds[i] for i in rows])
        assert b[0].dtype == dtype and b[0].shape == (len(rows), 1, 32, 48, 48)
        assert torch.equal(b[0], want[0]) and torch.equal(b[1], want[1])
        assert b[2] == want[2] and torch.equal(b[3], want[3])
    # a plain DataLoader (default collation) gets the same batches from __getitems__
    plain = list(DataLoader(ds, batch_size=4, sampler=order))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
               for a, b in zip(plain, batches))
    with pytest.raises(IndexError):
        ds.__getitems__([0, len(ds)])
    assert torch.equal(ds.__getitems__([-1]).collated[0][0], ds[len(ds) - 1][0])


def test_centre_outside_volume_names_series_and_csv(data):
    root, cache, uids, cands = data
    bad = list(cands) + [(uids[1], 5000.0, 5000.0, 5000.0, 0)]
    write_candidates(root, bad)
    ds = LunaDataset(val_stride=0, data_dir=root, cache_dir=cache)
    ndx = next(i for i, c in enumerate(ds.candidate_list) if c.center_xyz[0] == 5000.0)
    with pytest.raises(LunaInputError) as e:
        ds[ndx]
    assert uids[1] in str(e.value) and "candidates.csv" in str(e.value)


def test_non_symmetric_direction_samples_match_simpleitk(tmp_path):
    """Candidates given as world points of a CT with a non-symmetric direction and x != y
    spacing: each sample's centre is SimpleITK's voxel for the point, and holds its value."""
    clear_cache()
    root, shape, width = tmp_path / "data", (7, 11, 13), (3, 5, 7)
    mhd = write_ct(root, UID_A, hu_a=unique_volume(shape), origin=(12.5, -40.25, 3.0),
                   spacing=(0.6, 0.9, 2.5), direction=ROT90Z_FLIPZ)
    img = sitk.ReadImage(str(mhd))
    rng = np.random.default_rng(2)
    irc_list = [(3, 5, 6), (1, 2, 3), (5, 8, 9), (0, 0, 0), (6, 10, 12), (2, 9, 1)]
    rows = []
    for irc in irc_list:
        cont = np.array(irc[::-1], dtype=float) + rng.uniform(-0.3, 0.3, 3)
        xyz = img.TransformContinuousIndexToPhysicalPoint([float(v) for v in cont])
        rows.append((UID_A, *xyz, 0))
    write_candidates(root, rows)
    write_annotations(root, [])
    ds = LunaDataset(val_stride=0, data_dir=root, cache_dir=tmp_path / "cache",
                     width_irc=width)
    assert len(ds) == len(irc_list)
    seen = set()
    for k, cand in enumerate(ds.candidate_list):
        chunk, _, _, center = ds[k]
        sitk_index = img.TransformPhysicalPointToIndex(cand.center_xyz)
        irc = tuple(center.tolist())
        assert irc == sitk_index[::-1]
        want = img.GetPixel(sitk_index)
        starts = window_starts(irc, shape, width)
        assert chunk[0][tuple(c - s for c, s in zip(irc, starts))].item() == want
        if irc == (3, 5, 6):                         # interior: exactly at the centre
            assert chunk[0, 1, 2, 3].item() == want
        seen.add(irc)
    assert seen == set(irc_list)
