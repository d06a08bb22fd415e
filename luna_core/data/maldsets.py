"""The malignancy task's data (the book's ch. 14): benign against malignant nodules.

- **Nodules**: ``annotations_with_malignancy.csv`` (the book's file, one row a nodule,
  ``mal_bool``); required (a clear error naming where it was looked for). Their chunks are
  cut at the annotated centres (32×48×48, as the classifier's), kept in their own chunk store
  (``cache_dir/chunks-nodules-32x48x48/``) so the classifier's candidate store is not rebuilt.
- **Non-nodules** for training: the candidate list's class-0 candidates of the training
  series, read from the classifier's chunk store.
- **Split**: by series (every ``val_stride``-th of the candidate list's sorted series), as
  the segmentation task's, so a ch. 14 analysis can use all three models on unseen scans.
- **Training order** (``MalignancySampler``): the book's ``MalignantLunaDataset``: odd
  positions the next malignant nodule, positions 0, 4, 8 … the next benign one, 2, 6, 10 …
  the next non-nodule; each list in its own permutation from (seed, epoch), cycled.
  Validation: every validation nodule once. Label: malignant (a non-nodule is not).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from luna_core.errors import LunaInputError

from .candidates import CandidateInfo, csv_paths, find_csv_dir
from .chunkstore import ChunkStore, group_centres, read_chunk
from .csvread import MALIGNANCY_CSV, read_malignancy
from .ct import CHUNK_WIDTH_IRC, window_starts_array
from .dsets import LunaDataset
from .geometry import XyzTuple
from .sampler import EpochSampler
from .segdsets import split_series

NON_NODULE, BENIGN, MALIGNANT = 0, 1, 2
MALIGNANCY_EPOCH_SAMPLES = 100_000          # the book's MalignantLunaDataset length


class NoduleChunkStore(ChunkStore):
    """The chunks at the annotated nodules' centres (a store of its own)."""

    def __init__(self, data_dir, cache_dir) -> None:
        super().__init__(data_dir, cache_dir, CHUNK_WIDTH_IRC)
        self.dir = Path(cache_dir) / "chunks-nodules-{}x{}x{}".format(*CHUNK_WIDTH_IRC)


def malignancy_file(data_dir) -> Path:
    path = find_csv_dir(data_dir) / MALIGNANCY_CSV
    if not path.is_file():
        raise LunaInputError(f"--task malignancy needs the book's {MALIGNANCY_CSV} beside "
                             "candidates.csv (one row a nodule, with mal_bool); 'luna-tui "
                             "synth' writes one", path)
    return path


_LABELS = {False: torch.tensor([1, 0], dtype=torch.long),
           True: torch.tensor([0, 1], dtype=torch.long)}


class MalignancyDataset(Dataset):
    """Nodules of ``series`` (and, for training, the non-nodule candidates of the classifier's
    training set ``negatives``): ``__getitem__`` gives (chunk int16 (1, 32, 48, 48), one-hot
    label malignant, series uid, centre irc), as the classifier's set does."""

    width_irc = CHUNK_WIDTH_IRC

    def __init__(self, data_dir, cache_dir, series: list[str], nodules: dict,
                 negatives: LunaDataset | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.store = NoduleChunkStore(data_dir, cache_dir)
        self.series_uids = [u for u in series if nodules.get(u)]
        rows = [(s, n) for s, u in enumerate(self.series_uids) for n in nodules[u]]
        idx = np.array([s for s, _n in rows], dtype=np.int64)
        xyz = np.array([n[:3] for _s, n in rows], dtype=np.float64).reshape(-1, 3)
        self.centres, self.offsets, self.chunk_no = group_centres(idx, xyz,
                                                                  len(self.series_uids))
        self.series_of = idx
        self.center_xyz = xyz
        self.diameter = np.array([n[3] for _s, n in rows], dtype=np.float64)
        self.malignant = np.array([n[4] for _s, n in rows], dtype=bool)
        self.negatives = negatives
        self.negative_rows = (np.flatnonzero(~np.asarray(negatives.is_nodule))
                              if negatives is not None else np.zeros(0, np.int64))
        self.nodule_count = len(rows)
        # the classes by index: nodules first, then the non-nodules
        self.classes = np.concatenate([np.where(self.malignant, MALIGNANT, BENIGN),
                                       np.full(len(self.negative_rows), NON_NODULE)])
        self.pos_count = int(self.malignant.sum())
        h = hashlib.sha256(b"luna-malignancy-v1\n")
        h.update(repr([(self.series_uids[s], n) for s, n in rows]).encode())
        h.update(self.negative_rows.tobytes())
        self.fingerprint = h.hexdigest()
        self._known: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def is_nodule(self) -> np.ndarray:
        return self.classes != NON_NODULE

    def _series(self, s: int):
        chunks = self._known.get(s)
        if chunks is None:
            chunks = self.store.ensure(self.series_uids[s],
                                       self.centres[self.offsets[s]:self.offsets[s + 1]])
            self._known[s] = chunks
        return chunks

    def prepare(self) -> None:
        for s in range(len(self.series_uids)):
            self._series(s)

    @property
    def candidate_list(self) -> list[CandidateInfo]:
        """The nodules as candidates (``is_nodule`` True each), by index (the examples')."""
        return [CandidateInfo(True, float(self.diameter[n]),
                              self.series_uids[int(self.series_of[n])],
                              XyzTuple(*map(float, self.center_xyz[n])))
                for n in range(self.nodule_count)]

    def example_of(self, ndx: int) -> dict:
        """Nodule ``ndx``'s chunk and where it lies (as LunaDataset.example_of)."""
        chunks = self._series(int(self.series_of[ndx]))
        k = int(self.chunk_no[ndx])
        irc = chunks.center_irc[k]
        starts, _ = window_starts_array(irc, chunks.shape_irc, chunks.width_irc)
        return {"chunk": read_chunk(chunks, k), "center_irc": [int(v) for v in irc],
                "irc_in_chunk": [int(v) for v in irc - starts[0]],
                "vx_size_xyz": [float(v) for v in chunks.vx_size_xyz]}

    def __getitem__(self, ndx: int):
        if ndx >= self.nodule_count:
            chunk, _label, uid, center = self.negatives[int(self.negative_rows[
                ndx - self.nodule_count])]
            return chunk, _LABELS[False].clone(), uid, center
        s = int(self.series_of[ndx])
        chunks = self._series(s)
        k = int(self.chunk_no[ndx])
        hu = read_chunk(chunks, k).reshape(1, *CHUNK_WIDTH_IRC)
        return (torch.from_numpy(hu), _LABELS[bool(self.malignant[ndx])].clone(),
                self.series_uids[s], torch.from_numpy(chunks.center_irc[k].copy()))


class MalignancySampler(EpochSampler):
    """The book's malignancy training order (see the module), ``epoch_samples`` positions an
    epoch (the book: 100,000), sharded and padded over ranks like EpochSampler."""

    def __init__(self, classes, seed: int, rank: int = 0, world_size: int = 1,
                 epoch_samples: int | None = None) -> None:
        classes = np.asarray(classes)
        self.lists = [np.flatnonzero(classes == c) for c in (NON_NODULE, BENIGN, MALIGNANT)]
        empty = [name for name, rows in zip(("non-nodules", "benign nodules",
                                             "malignant nodules"), self.lists, strict=True)
                 if not len(rows)]
        if empty:
            raise LunaInputError(f"the malignancy training set has no {' and no '.join(empty)}"
                                 " (the book's order needs all three)")
        super().__init__(len(classes), seed, True, rank, world_size,
                         MALIGNANCY_EPOCH_SAMPLES if epoch_samples is None else epoch_samples)

    def indices(self) -> list[int]:
        generator = self._generator()
        perms = [torch.randperm(len(rows), generator=generator).numpy() for rows in self.lists]
        at = np.arange(self.epoch_samples)
        neg, ben, mal = ((rows[perm[n % len(perm)]]) for rows, perm, n in zip(
            self.lists, perms, (at // 4, at // 4, at // 2), strict=True))
        return np.where(at % 2 == 1, mal, np.where(at % 4 == 0, ben, neg)).tolist()


def make_malignancy_datasets(data_dir, cache_dir, val_stride: int, candidates_file=None):
    """(training, validation) sets; their nodule chunks cut first where missing."""
    nodules = read_malignancy(malignancy_file(data_dir))
    trn_series, val_series = split_series(data_dir, val_stride, candidates_file)
    csv_paths(data_dir, candidates_file)                 # a clear error for missing CSVs
    negatives = LunaDataset(val_stride=val_stride, is_val=False, data_dir=data_dir,
                            cache_dir=cache_dir, candidates_file=candidates_file,
                            chunk_dtype=torch.int16, split="series")
    trn = MalignancyDataset(data_dir, cache_dir, trn_series, nodules, negatives)
    val = MalignancyDataset(data_dir, cache_dir, val_series, nodules)
    for ds in (trn, val):
        ds.prepare()
    return trn, val
