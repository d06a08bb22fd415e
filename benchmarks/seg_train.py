"""--task seg's training samples/s: the project's data path against a book-style one.

    .venv/bin/python benchmarks/seg_train.py [--json FILE]              # real-sized CTs
    .venv/bin/python benchmarks/seg_train.py --data-dir data-unversioned/demo  # the demo's

By default it writes (once, in ``--work``) a synthetic LUNA-format set of real-sized CTs:
12 series of 512 x 512 x 100-140 voxels with 1-3 nodules each (the release's in-plane size;
its CTs hold ~250 slices, so a real CT costs the book-style path about twice as much to read
as these). The demo set's CTs (160 x 160 x ~70) are 20 x smaller than real ones.

Both arms train the same model (the book's U-Net wrapper), with the same loss (Dice + 8 x the
false-negative Dice), the same Adam step and batch size, on the same nodules of the same
LUNA-format set, in one process, interleaved (A B, B A, ...) after a warm-up; only the data
path differs:

- **project**: ``SegTrainingDataset`` (each nodule's 7x96x96 window and its mask, stored once,
  one positioned read a sample), a DataLoader, the random 64x64 crop cut on the training
  device (as ``luna_core.tasks.seg`` does);
- **book-style**: a Dataset in the shape of the book's p2ch13 ``TrainingLuna2dSegmentation
  Dataset``: one ``Ct`` per series in an LRU cache of 1 (``functools.lru_cache(1)``, as the
  book's ``getCt``), its mask built when the CT is loaded and kept with it, each sample cut
  from the whole volume (7x96x96 and the mask's middle slice) and cropped to 64x64 in the
  Dataset, samples in random order across series.

It reports samples/s of each arm (median of the trials), their ratio (target: the project's
at least 1.5x) and this process's CPU time. The validation share of an epoch is measured on a
real run (README): whole slices are most of its cost.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import machine_info, print_machine, write_json  # noqa: E402

from luna_core.data.csvread import read_annotations  # noqa: E402
from luna_core.data.ct import Ct, cut_chunk, find_mhd, window_starts  # noqa: E402
from luna_core.data.masks import build_mask  # noqa: E402
from luna_core.data.segdsets import (  # noqa: E402
    SegTrainingDataset,
    nodules_file,
    split_series,
)
from luna_core.data.segstore import CONTEXT_SLICES, WINDOW_IRC  # noqa: E402
from luna_core.tasks.seg import CROP, crop_corners  # noqa: E402
from luna_core.train.seg_metrics import seg_loss  # noqa: E402
from luna_core.train.unet import SEG_CHANNELS, SegModel  # noqa: E402


class BookStyleSegDataset(torch.utils.data.Dataset):
    """The book's shape: a Ct per series behind an LRU cache of one, the mask with it."""

    def __init__(self, data_dir: str, nodules: list[tuple[str, tuple[float, float, float]]],
                 seed: int = 0) -> None:
        self.data_dir, self.nodules = data_dir, nodules
        self.rng = random.Random(seed)

    @functools.lru_cache(1)  # noqa: B019 - the book's getCt: one CT at a time
    def ct_and_mask(self, uid: str):
        ct = Ct.read(find_mhd(self.data_dir, uid), uid)
        centres = [ct.xyz2irc(xyz) for u, xyz in self.nodules if u == uid]
        return ct, build_mask(ct.hu_a, centres)

    def __len__(self) -> int:
        return len(self.nodules)

    def __getitem__(self, ndx: int):
        uid, xyz = self.nodules[ndx]
        ct, mask = self.ct_and_mask(uid)
        starts = window_starts(ct.xyz2irc(xyz), ct.hu_a.shape, WINDOW_IRC)
        hu = cut_chunk(ct.hu_a, starts, WINDOW_IRC)
        label = cut_chunk(mask.astype(np.int16), (starts[0] + CONTEXT_SLICES, *starts[1:]),
                          (1, *WINDOW_IRC[1:]), pad_value=0)
        r, c = self.rng.randrange(0, 96 - CROP + 1), self.rng.randrange(0, 96 - CROP + 1)
        return (torch.from_numpy(np.ascontiguousarray(hu[:, r:r + CROP, c:c + CROP])),
                torch.from_numpy(np.ascontiguousarray(label[:, r:r + CROP, c:c + CROP])))


def _step(model, optimizer, input_g, label_g) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = seg_loss(model(input_g.float()), label_g.float()).mean()
    loss.backward()
    optimizer.step()


def run_arm(arm: str, loader, model, optimizer, batches: int, seed: int) -> tuple[float, float]:
    """(samples/s, CPU s) of ``batches`` training batches through ``loader``."""
    rng = np.random.default_rng(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    samples = 0
    it = iter(loader)
    for _ in range(batches):
        batch = next(it)
        if arm == "project":
            windows = batch[0]
            corners = crop_corners(lambda _j: rng, len(windows), windows.shape[-1])
            crops = torch.stack([windows[j, :, r:r + CROP, c:c + CROP]
                                 for j, (r, c) in enumerate(corners)])
            input_g, label_g = crops[:, :SEG_CHANNELS], crops[:, SEG_CHANNELS:]
        else:
            input_g, label_g = batch
        _step(model, optimizer, input_g, label_g)
        samples += len(input_g)
    return samples / (time.perf_counter() - t0), time.process_time() - c0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="a LUNA-format set (default: write a real-sized one in --work)")
    p.add_argument("--cache-dir", default=None, help="its cache (default: beside it)")
    p.add_argument("--work", default="data-unversioned/bench-seg")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=12, help="training batches a trial")
    p.add_argument("--trials", type=int, default=3, help="trials of each arm (interleaved)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)
    if args.data_dir is None:
        args.data_dir = os.path.join(args.work, "luna")
        if not os.path.exists(os.path.join(args.data_dir, "candidates.csv")):
            from luna_core.data.synth import write_synthetic_dataset

            t0 = time.perf_counter()
            write_synthetic_dataset(args.data_dir, 12, 0, size_xy=512, slices=(100, 140),
                                    negatives_per_series=20, nodules_per_series=(1, 3))
            print(f"wrote a real-sized synthetic set in {time.perf_counter() - t0:.0f} s")
    args.cache_dir = args.cache_dir or args.data_dir.rstrip("/") + "-cache"
    trn_series, _val = split_series(args.data_dir, 10)
    nodules = read_annotations(nodules_file(args.data_dir))
    project = SegTrainingDataset(args.data_dir, args.cache_dir, trn_series, nodules)
    t0 = time.perf_counter()
    project.prepare()
    print(f"windows ready in {time.perf_counter() - t0:.1f} s ({len(project)} nodules, "
          f"{len(project.series_uids)} series)")
    pairs = [(u, n[:3]) for u in project.series_uids for n in nodules[u]]
    book = BookStyleSegDataset(args.data_dir, pairs)
    loaders = {}
    for arm, ds in (("project", project), ("book-style", book)):
        g = torch.Generator().manual_seed(0)
        sampler = torch.utils.data.RandomSampler(ds, replacement=True,
                                                 num_samples=10**7, generator=g)
        loaders[arm] = torch.utils.data.DataLoader(ds, batch_size=args.batch_size,
                                                   sampler=sampler, num_workers=0)
    torch.manual_seed(0)
    model = SegModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for arm in loaders:                                 # warm-up: allocator, caches
        run_arm(arm, loaders[arm], model, optimizer, 2, 0)
    speeds: dict[str, list[float]] = {a: [] for a in loaders}
    cpu: dict[str, float] = dict.fromkeys(loaders, 0.0)
    order = list(loaders)
    for trial in range(args.trials):
        for arm in order if trial % 2 == 0 else order[::-1]:
            sps, cpu_s = run_arm(arm, loaders[arm], model, optimizer, args.batches, trial + 1)
            speeds[arm].append(sps)
            cpu[arm] += cpu_s
            print(f"trial {trial + 1} {arm:10} {sps:7.1f} samples/s")
    med = {a: statistics.median(v) for a, v in speeds.items()}
    ratio = med["project"] / med["book-style"]
    print(f"\nseg training, batch {args.batch_size}, {args.batches} batches x {args.trials} "
          f"trials each, torch threads {torch.get_num_threads()}:")
    for arm in loaders:
        print(f"  {arm:10} median {med[arm]:7.1f} samples/s (min {min(speeds[arm]):.1f}, "
              f"max {max(speeds[arm]):.1f}); CPU {cpu[arm]:.1f} s")
    print(f"  project / book-style: {ratio:.2f}x (target >= 1.5x)")
    write_json(args.json, {"machine": info, "samples_per_s": speeds, "median": med,
                           "ratio": ratio, "batch_size": args.batch_size})
    return 0


if __name__ == "__main__":
    sys.exit(main())
