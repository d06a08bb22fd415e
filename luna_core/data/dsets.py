"""LunaDataset: candidate chunks for the ch. 11 classifier.

A sample is ``(chunk float32 (1, 32, 48, 48), label long (2,) one-hot [not nodule, nodule],
series_uid str, centre irc long (3,))``, like the book. The dataset never shuffles (the
trainer samples with a seeded permutation). CTs are converted into the .npy cache lazily, the
first time one of their candidates is read; the voxel window of every candidate of that series
is computed then, in one vectorised step, so ``__getitem__`` only slices and converts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import ct as ct_mod
from .candidates import (
    CandidateInfo,
    candidate_fingerprint,
    csv_paths,
    gc_paused,
    get_candidate_info_list,
    split_candidates,
)
from .ct import CHUNK_WIDTH_IRC, PAD_HU, CtCache, outside_error
from .geometry import XyzTuple
from .layout import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR

_LABEL_NOT_NODULE = torch.tensor([1, 0], dtype=torch.long)
_LABEL_NODULE = torch.tensor([0, 1], dtype=torch.long)


class LunaDataset(Dataset):
    def __init__(self, val_stride: int = 10, is_val: bool = False,
                 data_dir=DEFAULT_DATA_DIR, cache_dir=DEFAULT_CACHE_DIR,
                 candidates_file=None, width_irc=CHUNK_WIDTH_IRC):
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.val_stride = val_stride
        self.is_val = is_val
        self.width_irc = tuple(int(w) for w in width_irc)
        self._chunk_shape = (1, *self.width_irc)
        _ann, self.candidates_path = csv_paths(self.data_dir, candidates_file)
        full = get_candidate_info_list(self.data_dir, candidates_file)
        candidates = split_candidates(full, val_stride, is_val, data_dir=self.data_dir)
        self._candidate_list: list[CandidateInfo] | None = candidates
        self._fingerprint: str | None = None
        self.cache = CtCache(self.data_dir, self.cache_dir)

        # Compact columns: all __getitem__ needs, and all that is pickled for workers.
        n = len(candidates)
        uid_index: dict[str, int] = {}
        self._series_idx = np.fromiter(
            (uid_index.setdefault(c.series_uid, len(uid_index)) for c in candidates),
            dtype=np.int32, count=n)
        self._uids = list(uid_index)
        self._center_xyz = np.array([c.center_xyz for c in candidates],
                                    dtype=np.float64).reshape(n, 3)
        self._diameter = np.fromiter((c.diameter_mm for c in candidates), np.float64, n)
        self._is_nodule = np.fromiter((c.is_nodule for c in candidates), bool, n)
        self.pos_count = int(self._is_nodule.sum())
        self.neg_count = n - self.pos_count
        self._reset_lookups()

    def _reset_lookups(self) -> None:
        n = len(self._series_idx)
        self._series_list = self._series_idx.tolist()
        self._is_nodule_list = self._is_nodule.tolist()
        # Filled per series on first use: voxel window start, centre irc, padding flag.
        self._geoms: list = [None] * len(self._uids)
        self._starts: list = [None] * n
        self._center_irc: list = [None] * n
        self._padded: list = [False] * n

    def __getstate__(self):
        # Workers (spawn/forkserver) get the compact columns only; the candidate list and
        # the per-series lookups are rebuilt where needed.
        state = self.__dict__.copy()
        for key in ("_candidate_list", "_series_list", "_is_nodule_list", "_geoms",
                    "_starts", "_center_irc", "_padded"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._candidate_list = None
        self._reset_lookups()

    @property
    def candidate_list(self) -> list[CandidateInfo]:
        if self._candidate_list is None:
            with gc_paused():
                xyz = self._center_xyz.tolist()
                self._candidate_list = [
                    CandidateInfo(nod, d, self._uids[s], XyzTuple(*c))
                    for nod, d, s, c in zip(self._is_nodule.tolist(), self._diameter.tolist(),
                                            self._series_list, xyz)]
        return self._candidate_list

    # ---------------------------------------------------------------- bookkeeping
    @property
    def fingerprint(self) -> str:
        """sha256 of this split's candidate list (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = candidate_fingerprint(self.candidate_list)
        return self._fingerprint

    @property
    def series_uids(self) -> list[str]:
        return list(self._uids)

    def __len__(self) -> int:
        return len(self._series_list)

    def __repr__(self) -> str:
        kind = "val" if self.is_val else "trn"
        return (f"LunaDataset({kind}, {len(self)} samples: {self.pos_count} nodules, "
                f"{self.neg_count} others, {len(self._uids)} series)")

    # ---------------------------------------------------------------- per-series prep
    def _open_series(self, s: int):
        uid = self._uids[s]
        geom = self.cache.ensure(uid)
        rows = np.flatnonzero(self._series_idx == s)
        irc = geom.xyz2irc_array(self._center_xyz[rows])
        shape = np.asarray(geom.shape_irc, dtype=np.int64)
        inside = np.all((irc >= 0) & (irc < shape), axis=1)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise outside_error(uid, self._center_xyz[rows[bad]], irc[bad], geom.shape_irc,
                                self.candidates_path)
        starts, padded = ct_mod.window_starts_array(irc, geom.shape_irc, self.width_irc)
        starts_l = starts.tolist()
        irc_l = irc.tolist()
        padded_l = padded.tolist()
        for j, row in enumerate(rows.tolist()):
            self._starts[row] = tuple(starts_l[j])
            self._center_irc[row] = torch.tensor(irc_l[j], dtype=torch.long)
            self._padded[row] = padded_l[j]
        self._geoms[s] = geom
        return geom

    def chunk_hu(self, ndx: int) -> np.ndarray:
        """The candidate's chunk as int16 HU (a read-only view when no padding is needed)."""
        s = self._series_list[ndx]
        geom = self._geoms[s]
        if geom is None:
            geom = self._open_series(s)
        vol = ct_mod.open_volume(geom)
        i0, r0, c0 = self._starts[ndx]
        wi, wr, wc = self.width_irc
        if self._padded[ndx]:
            return ct_mod.cut_chunk(vol, (i0, r0, c0), self.width_irc, PAD_HU)
        return vol[i0:i0 + wi, r0:r0 + wr, c0:c0 + wc]

    # ---------------------------------------------------------------- samples
    def __getitem__(self, ndx: int):
        if ndx < 0:
            ndx += len(self._series_list)
        # The cost is gathering 1,536 rows of 96 bytes, 1 KB apart, from the memory map
        # (bound by memory latency). A plain copy first, then a contiguous int16 -> float32
        # cast, is ~1.5x faster than a strided astype, as fast as torch's single-threaded
        # copy kernel, and never waits on other threads (a 2-thread torch copy stalls for
        # milliseconds when the cores are busy).
        chunk = np.ascontiguousarray(self.chunk_hu(ndx)).astype(np.float32)
        chunk_t = torch.from_numpy(chunk.reshape(self._chunk_shape))
        label_t = (_LABEL_NODULE if self._is_nodule_list[ndx] else _LABEL_NOT_NODULE).clone()
        return (chunk_t, label_t, self._uids[self._series_list[ndx]],
                self._center_irc[ndx].clone())
