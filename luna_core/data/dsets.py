"""LunaDataset: candidate chunks for the ch. 11 classifier.

A sample is ``(chunk (1, 32, 48, 48), label long (2,) one-hot [not nodule, nodule], series_uid
str, centre irc long (3,))``, like the book. The chunk is float32 HU like the book's, or the
stored int16 (``chunk_dtype=torch.int16``: what the trainer asks for, converting on the training
device, which halves what workers collate and what is copied to the GPU). The dataset never
shuffles (the trainer samples with a seeded permutation). Chunks come from the chunk store
(``chunkstore``): a series' store is built lazily, the first time one of its candidates is read,
and each sample is one positioned read of exactly its chunk. ``__getitems__`` reads a whole batch
into one tensor; with ``collate_samples`` as the loader's collate_fn (the trainer's loaders) it is
the batch as it is, with no per-sample tensors stacked.
"""

from __future__ import annotations

import collections.abc
import itertools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .candidates import (
    CandidateInfo,
    candidate_fingerprint,
    candidate_tuple,
    csv_paths,
    gc_paused,
    split_candidates,
    split_indices,
)
from .chunkstore import ChunkStore, group_centres, read_chunk, read_chunk_into
from .ct import CHUNK_WIDTH_IRC, window_starts_array
from .default_dirs import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR
from .geometry import XyzTuple

_LABEL_NOT_NODULE = torch.tensor([1, 0], dtype=torch.long)
_LABEL_NODULE = torch.tensor([0, 1], dtype=torch.long)
_ONE_HOT = np.array([[1, 0], [0, 1]], dtype=np.int64)


def shared_empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory, so that a loader worker hands a batch to the
    main process without copying it (what torch's default_collate does in a worker).

    Private API: ``UntypedStorage._new_shared``; tests/test_private_apis.py fails if a torch
    upgrade removes it."""
    numel = int(np.prod(shape))
    storage = torch.UntypedStorage._new_shared(numel * torch.empty(0, dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage, 0, tuple(shape))


class ChunkBatch(collections.abc.Sequence):
    """What ``LunaDataset.__getitems__`` returns: the sequence of samples a DataLoader's default
    collation expects (made on access, each chunk a view into the batch tensor), and the batch
    itself, which ``collate_samples`` hands on as it is: no per-sample tensors, no stacking."""

    def __init__(self, collated):
        self.collated = collated

    def __len__(self) -> int:
        return len(self.collated[2])

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        chunks_t, labels_t, uids, irc_t = self.collated
        return chunks_t[j], labels_t[j], uids[j], irc_t[j]


def collate_samples(samples):
    """A DataLoader ``collate_fn``: a ``ChunkBatch`` as read, anything else as default."""
    if isinstance(samples, ChunkBatch):
        return samples.collated
    return torch.utils.data.default_collate(samples)


_COLUMNS: dict = {}


def _list_columns(full: tuple):
    """Columns of a whole sorted candidate list and where each candidate's chunk is: built once
    per parsed list (the training and the validation set share them; ~1 s for LUNA16's
    551,065 rows)."""
    hit = _COLUMNS.get(id(full))
    if hit is not None and hit[0] is full:
        return hit[1]
    n = len(full)
    uid_index: dict[str, int] = {}
    series = np.fromiter((uid_index.setdefault(c.series_uid, len(uid_index)) for c in full),
                         dtype=np.int32, count=n)
    xyz = np.fromiter(itertools.chain.from_iterable(c.center_xyz for c in full),
                      dtype=np.float64, count=3 * n).reshape(n, 3)
    nodule = np.fromiter((c.is_nodule for c in full), dtype=bool, count=n)
    diameter = np.fromiter((c.diameter_mm for c in full), dtype=np.float64, count=n)
    centres, offsets, chunk_no = group_centres(series, xyz, len(uid_index))
    for a in (series, nodule, diameter, centres, offsets, chunk_no):
        a.flags.writeable = False
    columns = (list(uid_index), series, nodule, diameter, centres, offsets, chunk_no)
    _COLUMNS.clear()
    _COLUMNS[id(full)] = (full, columns)
    return columns


class LunaDataset(Dataset):
    def __init__(self, val_stride: int = 10, is_val: bool = False,
                 data_dir=DEFAULT_DATA_DIR, cache_dir=DEFAULT_CACHE_DIR,
                 candidates_file=None, width_irc=CHUNK_WIDTH_IRC,
                 chunk_dtype: torch.dtype = torch.float32, split: str = "candidates"):
        if chunk_dtype not in (torch.float32, torch.int16):
            raise ValueError(f"chunk_dtype must be torch.float32 or torch.int16, not {chunk_dtype}")
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.val_stride = val_stride
        self.split = split
        self.is_val = is_val
        self.width_irc = tuple(int(w) for w in width_irc)
        self.chunk_dtype = chunk_dtype
        self._chunk_shape = (1, *self.width_irc)
        self.annotations_path, self.candidates_path = csv_paths(self.data_dir,
                                                                candidates_file)
        full = candidate_tuple(self.data_dir, candidates_file)
        candidates = split_candidates(full, val_stride, is_val, data_dir=self.data_dir,
                                      split=split)
        self._candidate_list: list[CandidateInfo] | None = candidates
        self._fingerprint: str | None = None
        self.store = ChunkStore(self.data_dir, self.cache_dir, self.width_irc,
                                self.candidates_path)

        # Compact columns: all __getitem__ needs, and all that is pickled for workers. A
        # series' store holds the chunks of all its candidates (training and validation), so
        # its centres come from the whole list.
        self._uids, full_series, full_nodule, full_diameter, self._centres, self._offsets, \
            full_chunk = _list_columns(full)
        rows = split_indices(len(full), val_stride, is_val, split,
                             [self._uids[s] for s in full_series.tolist()]
                             if split == "series" else None)
        self._series_idx = full_series[rows]
        self._chunk_no = full_chunk[rows].astype(np.int32)
        self._diameter = full_diameter[rows]
        self._is_nodule = full_nodule[rows]
        self.pos_count = int(self._is_nodule.sum())
        self.neg_count = len(candidates) - self.pos_count
        self._reset_lookups()

    def _reset_lookups(self) -> None:
        self._series_list = self._series_idx.tolist()
        self._chunk_list = self._chunk_no.tolist()
        self._is_nodule_list = self._is_nodule.tolist()
        # Filled per series on first use: its store, and its chunks' centre irc.
        self._chunks: list = [None] * len(self._uids)
        self._center_irc: list = [None] * len(self._uids)

    def __getstate__(self):
        # Workers (spawn/forkserver) get the compact columns only; the candidate list and
        # the per-series lookups are rebuilt where needed.
        state = self.__dict__.copy()
        for key in ("_candidate_list", "_series_list", "_chunk_list", "_is_nodule_list",
                    "_chunks", "_center_irc"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._candidate_list = None
        self._reset_lookups()

    def _xyz_of_rows(self) -> np.ndarray:
        return self._centres[self._offsets[self._series_idx] + self._chunk_no]

    @property
    def candidate_list(self) -> list[CandidateInfo]:
        if self._candidate_list is None:
            with gc_paused():
                xyz = self._xyz_of_rows().tolist()
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
    def is_nodule(self) -> np.ndarray:
        """(N,) bool: which samples are nodules (for the balanced sampler)."""
        return self._is_nodule

    @property
    def series_uids(self) -> list[str]:
        """The series this split has candidates in."""
        return [self._uids[s] for s in np.unique(self._series_idx).tolist()]

    def candidate_columns(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(series uid, centre xyz (n, 3), is nodule) of every sample, in sample order:
        what the FROC score matches against the annotations."""
        uids = self._uids
        return [uids[s] for s in self._series_list], self._xyz_of_rows(), self._is_nodule

    def series_centres(self, series_uid: str) -> np.ndarray:
        """The distinct centres (sorted) whose chunks the series' store holds."""
        s = self._uids.index(series_uid)
        return self._centres[self._offsets[s]:self._offsets[s + 1]]

    def __len__(self) -> int:
        return len(self._series_list)

    def __repr__(self) -> str:
        kind = "val" if self.is_val else "trn"
        return (f"LunaDataset({kind}, {len(self)} samples: {self.pos_count} nodules, "
                f"{self.neg_count} others, {len(self.series_uids)} series)")

    # ---------------------------------------------------------------- per-series prep
    def _open_series(self, s: int):
        chunks = self.store.ensure(self._uids[s],
                                   self._centres[self._offsets[s]:self._offsets[s + 1]])
        self._center_irc[s] = chunks.center_irc
        self._chunks[s] = chunks
        return chunks

    def chunk_hu(self, ndx: int) -> np.ndarray:
        """The candidate's chunk as int16 HU (index, row, col): a new array."""
        s = self._series_list[ndx]
        chunks = self._chunks[s]
        if chunks is None:
            chunks = self._open_series(s)
        return read_chunk(chunks, self._chunk_list[ndx])

    def example_of(self, ndx: int) -> dict:
        """What a person looking at sample ``ndx`` needs: its chunk (int16 HU, index row col,
        as the model sees it before augmentation), its centre irc in the volume and in the
        chunk (the window is shifted inside the volume near an edge), and the voxel size."""
        s = self._series_list[ndx]
        chunks = self._chunks[s] or self._open_series(s)
        k = self._chunk_list[ndx]
        irc = chunks.center_irc[k]
        starts, _ = window_starts_array(irc, chunks.shape_irc, chunks.width_irc)
        return {"chunk": read_chunk(chunks, k), "center_irc": [int(v) for v in irc],
                "irc_in_chunk": [int(v) for v in irc - starts[0]],
                "vx_size_xyz": [float(v) for v in chunks.vx_size_xyz]}

    # ---------------------------------------------------------------- samples
    def __getitem__(self, ndx: int):
        if ndx < 0:
            ndx += len(self._series_list)
        s = self._series_list[ndx]
        chunks = self._chunks[s]
        if chunks is None:
            chunks = self._open_series(s)
        k = self._chunk_list[ndx]
        hu = read_chunk(chunks, k).reshape(self._chunk_shape)
        chunk_t = torch.from_numpy(hu if self.chunk_dtype is torch.int16
                                   else hu.astype(np.float32))
        label_t = (_LABEL_NODULE if self._is_nodule_list[ndx] else _LABEL_NOT_NODULE).clone()
        # a copied numpy row is ~2x faster than indexing and cloning a tensor
        return chunk_t, label_t, self._uids[s], torch.from_numpy(self._center_irc[s][k].copy())

    def __getitems__(self, indices) -> ChunkBatch:
        """A whole batch: each chunk read straight into its place in one batch tensor (in
        shared memory in a loader worker). With ``collate_samples`` as the loader's collate_fn
        that tensor is the batch; with the default collation the samples are stacked as usual."""
        n = len(self._series_list)
        rows = [i + n if i < 0 else i for i in indices]
        if rows and not 0 <= min(rows) <= max(rows) < n:
            raise IndexError(f"index out of range for {n} samples: {indices}")
        shape = (len(rows), *self._chunk_shape)
        in_worker = torch.utils.data.get_worker_info() is not None
        chunks_t = (shared_empty(shape, self.chunk_dtype) if in_worker
                    else torch.empty(shape, dtype=self.chunk_dtype))
        int16 = self.chunk_dtype is torch.int16
        if int16:      # each chunk's bytes straight into its slot of the batch
            flat = memoryview(chunks_t.numpy()).cast("B")
            scratch = None
        else:
            out = chunks_t.numpy()
            scratch = np.empty(self.width_irc, "<i2")
        series_list, chunk_list, opened = self._series_list, self._chunk_list, self._chunks
        irc = np.empty((len(rows), 3), dtype=np.int64)
        uids = []
        nbytes = 2 * int(np.prod(self.width_irc))
        for j, ndx in enumerate(rows):
            s = series_list[ndx]
            chunks = opened[s] or self._open_series(s)
            k = chunk_list[ndx]
            if int16:
                read_chunk_into(chunks, k, flat[j * nbytes:(j + 1) * nbytes])
            else:
                read_chunk_into(chunks, k, scratch)
                out[j, 0] = scratch
            irc[j] = self._center_irc[s][k]
            uids.append(self._uids[s])
        labels_t = torch.from_numpy(_ONE_HOT[self._is_nodule[rows].astype(np.intp)])
        return ChunkBatch((chunks_t, labels_t, tuple(uids), torch.from_numpy(irc)))
