"""The segmentation task's data (the book's ch. 13): nodules, the split, the samples.

- **Nodules**: ``annotations_with_malignancy.csv`` (the book's file, one row a nodule) when it
  is beside the CSVs, else ``annotations.csv``; only the series on disk that the candidate
  list names (the classifier's series, so both split them alike).
- **Split**: by series, as the classifier's ``--split series``: every ``val_stride``-th
  series of the sorted uids is validation.
- **Training samples**: one a nodule (``__getitem__``: its stored (8, 96, 96) window, 7 HU
  planes and the middle slice's mask; the loop's task cuts the random 64×64 crop on the
  device). An epoch draws ``--epoch-samples`` of them (the sampler's).
- **Validation samples**: whole slices (7 context slices, the mask of the middle one) of the
  validation series: the slices that hold mask pixels, or every slice (``full``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from luna_core.errors import LunaInputError
from luna_core.fsutil import remove_orphaned_temps

from .candidates import find_csv_dir, get_candidate_info_list
from .chunkstore import group_centres, read_chunk
from .csvread import MALIGNANCY_CSV, read_annotations
from .segstore import SegVolumeStore, SegWindowStore, read_slice

log = logging.getLogger(__name__)

ANNOTATIONS_CSV = "annotations.csv"


def nodules_file(data_dir) -> Path:
    """The CSV the nodules come from (the book's malignancy file when it is there)."""
    csv_dir = find_csv_dir(data_dir)
    book = csv_dir / MALIGNANCY_CSV
    return book if book.is_file() else csv_dir / ANNOTATIONS_CSV


def split_series(data_dir, val_stride: int, candidates_file=None) -> tuple[list[str], list[str]]:
    """(training, validation) series uids: those of the candidate list on disk, every
    ``val_stride``-th of the sorted uids validation (``val_stride <= 0``: all in both)."""
    uids = sorted({c.series_uid for c in get_candidate_info_list(data_dir, candidates_file)})
    if val_stride <= 0:
        return uids, uids
    val = uids[::val_stride]
    chosen = set(val)
    return [u for u in uids if u not in chosen], val


def _fingerprint(tag: str, rows) -> str:
    h = hashlib.sha256(f"luna-seg-{tag}-v1\n".encode())
    for row in rows:
        h.update(repr(row).encode())
    return h.hexdigest()


class SegTrainingDataset(Dataset):
    """One sample a nodule of the training series: its stored window (see the module)."""

    def __init__(self, data_dir, cache_dir, series: list[str],
                 nodules: dict[str, list[tuple[float, float, float, float]]]) -> None:
        self.store = SegWindowStore(data_dir, cache_dir)
        self.series_uids = [u for u in series if nodules.get(u)]
        xyz = np.array([n[:3] for u in self.series_uids for n in nodules[u]],
                       dtype=np.float64).reshape(-1, 3)
        idx = np.array([s for s, u in enumerate(self.series_uids) for _ in nodules[u]],
                       dtype=np.int64)
        self.centres, self.offsets, self.chunk_no = group_centres(idx, xyz,
                                                                  len(self.series_uids))
        self.series_of = idx
        self.pos_count = len(idx)
        self.fingerprint = _fingerprint("trn", zip([self.series_uids[s] for s in idx],
                                                   xyz.tolist(), strict=True))
        self._known: dict[int, object] = {}

    def __len__(self) -> int:
        return self.pos_count

    def _series(self, s: int):
        chunks = self._known.get(s)
        if chunks is None:
            chunks = self.store.ensure(self.series_uids[s], self._centres(s))
            self._known[s] = chunks
        return chunks

    def prepare(self) -> None:
        """Build every missing window file now (a clear error, before training, for a CT
        that cannot be read), saying how far it is every 10 s."""
        todo = [s for s in range(len(self.series_uids))
                if self.store.state(self.series_uids[s], self._centres(s)) != "ready"]
        if todo:
            log.info("segmentation: cutting the training windows of %d series (once; kept in "
                     "%s)", len(todo), self.store.dir)
        said = time.monotonic()
        for done, s in enumerate(todo, 1):
            self._series(s)
            if time.monotonic() - said >= 10 and done < len(todo):
                log.info("segmentation: windows of %d of %d series cut", done, len(todo))
                said = time.monotonic()
        for s in range(len(self.series_uids)):
            self._series(s)

    def _centres(self, s: int) -> np.ndarray:
        return self.centres[self.offsets[s]:self.offsets[s + 1]]

    def __getitem__(self, ndx: int):
        s = int(self.series_of[ndx])
        window = read_chunk(self._series(s), int(self.chunk_no[ndx]))
        return torch.from_numpy(window), self.series_uids[s], ndx


class SegValidationDataset(Dataset):
    """Whole slices of the validation series (see the module)."""

    def __init__(self, data_dir, cache_dir, series: list[str],
                 nodules: dict[str, list[tuple[float, float, float, float]]],
                 full: bool = False) -> None:
        self.store = SegVolumeStore(data_dir, cache_dir)
        self.volumes = []
        self.samples: list[tuple[int, int]] = []          # (volume, slice)
        said = time.monotonic()
        centres = {u: np.array([n[:3] for n in nodules.get(u, ())]) for u in series}
        todo = sum(1 for u in series if self.store.state(u, centres[u]) != "ready")
        if todo:
            log.info("segmentation: cutting the validation volumes of %d series (once; kept "
                     "in %s)", todo, self.store.dir)
        for done, uid in enumerate(series, 1):
            if time.monotonic() - said >= 10:
                log.info("segmentation: validation volumes of %d of %d series ready", done - 1,
                         len(series))
                said = time.monotonic()
            vol = self.store.ensure(uid, centres[uid])
            if not full and not vol.mask_slices:
                continue
            v = len(self.volumes)
            self.volumes.append(vol)
            slices = range(vol.shape_irc[0]) if full else vol.mask_slices
            self.samples.extend((v, k) for k in slices)
        self.series_uids = [v.series_uid for v in self.volumes]
        shapes = {v.shape_irc[1:] for v in self.volumes}
        if len(shapes) > 1 or any(h % 4 or w % 4 for h, w in shapes):
            odd = next(v for v in self.volumes if v.shape_irc[1:] != self.volumes[0].shape_irc[1:]
                       or v.shape_irc[1] % 4 or v.shape_irc[2] % 4)
            raise LunaInputError(
                f"validation slices must share one size, a multiple of 4 (series "
                f"{odd.series_uid} is {odd.shape_irc[1]}x{odd.shape_irc[2]}, others "
                f"{self.volumes[0].shape_irc[1]}x{self.volumes[0].shape_irc[2]})",
                path=odd.path)
        self.pos_count = sum(1 for v, k in self.samples if k in self.volumes[v].mask_slices)
        self.empty_nodules = sum(v.empty_nodules for v in self.volumes)
        self.fingerprint = _fingerprint("val", [(self.volumes[v].series_uid, k)
                                                for v, k in self.samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, ndx: int):
        v, k = self.samples[ndx]
        hu, mask = read_slice(self.volumes[v], k)
        return torch.from_numpy(hu), torch.from_numpy(mask), self.volumes[v].series_uid, k


def make_seg_datasets(data_dir, cache_dir, val_stride: int, candidates_file=None,
                      full: bool = False):
    """The training and validation sets (their stores built first where missing)."""
    path = nodules_file(data_dir)
    nodules = read_annotations(path)
    trn_series, val_series = split_series(data_dir, val_stride, candidates_file)
    for folder in (SegWindowStore(data_dir, cache_dir).dir, SegVolumeStore(data_dir,
                                                                           cache_dir).dir):
        if folder.is_dir():                # what a killed run left half written
            for gone in remove_orphaned_temps(str(folder)):
                log.info("removed %s (left half written by a process that is gone)", gone)
    trn = SegTrainingDataset(data_dir, cache_dir, trn_series, nodules)
    if not len(trn):
        raise LunaInputError(f"no nodule in the {len(trn_series)} training series", path=path)
    trn.prepare()
    val = SegValidationDataset(data_dir, cache_dir, val_series, nodules, full)
    if not len(val):
        raise LunaInputError(f"no validation slice: no nodule of {path.name} in the "
                             f"{len(val_series)} validation series", path=path)
    log.info("segmentation: nodules from %s; %d training nodules in %d series, %d validation "
             "slices (%d with nodule pixels) in %d series", path, len(trn),
             len(trn.series_uids), len(val), val.pos_count, len(val.series_uids))
    if val.empty_nodules:
        log.warning("%d validation nodule(s) give an empty mask (centre not above -700 HU)",
                    val.empty_nodules)
    return trn, val
