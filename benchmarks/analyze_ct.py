"""`luna-tui analyze` on one real-sized CT: seconds per stage (read, lungs, segment, group,
classify, grade) with untrained models of the real sizes, in the analysis' own configuration
(the box around the lungs, bf16 where the CPU has it) and, with ``--book``, the book's (every
pixel of every slice, fp32), in one run.

    .venv/bin/python benchmarks/analyze_ct.py [--slices 300] [--threads 0] [--book]
        [--candidates 2000] [--device cpu|cuda] [--json FILE]

On a GPU (``--device cuda``) the share of "read" (the CT from disk) and of the CPU's part of
each stage (cutting chunks, grouping) against the models' is what says whether data loading
holds the analysis back.

A model's speed does not depend on its weights, but what it calls does, so the stand-ins say
what trained models would: the U-Net is computed in full, then the pixels it "calls" are
``--candidates`` blobs at random points of the lungs' air (the book's ch. 14 table counts
about 1,900 candidates a validation CT); the classifier is computed in full for every
candidate and passes every 50th to grading (the book: a few dozen a CT).

The CT is simulated: a synthetic LUNA-format series of 512 x 512 x
``--slices`` voxels (written once in ``--work``), read back through SimpleITK as the analysis
reads any series. Target: at most 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import machine_info, print_machine, write_json  # noqa: E402

from luna_core.analysis import choose_precision, predictor  # noqa: E402
from luna_core.data.ct import Ct  # noqa: E402
from luna_core.score.pipeline import analyze_ct, lungs_of  # noqa: E402
from luna_core.train.model import LunaModel  # noqa: E402
from luna_core.train.unet import SegModel  # noqa: E402


def called_volume(ct, n: int, seed: int = 0) -> np.ndarray:
    """Where the stand-in segmentation calls nodule pixels: ``n`` blobs (7x7 pixels over 3
    slices: one erosion leaves each a component) at random points of the lungs' air."""
    box = lungs_of(ct)
    called = np.zeros(ct.hu_a.shape, dtype=np.float32)
    air = np.argwhere(ct.hu_a[box.index, box.row, box.col] < -400)
    rng = np.random.default_rng(seed)
    starts = np.array([box.index.start, box.row.start, box.col.start])
    for k, r, c in air[rng.choice(len(air), size=n, replace=False)] + starts:
        called[max(k - 1, 0):k + 2, max(r - 3, 0):r + 4, max(c - 3, 0):c + 4] = 1.0
    return called


def stand_ins(ct, precision: str, called: np.ndarray, lungs: bool, device: torch.device):
    """The models of the real sizes, computed in full; what they call is set: the
    segmentation's called pixels are ``called``'s, the classifier passes every 50th
    candidate to grading (the book: a few dozen a CT)."""
    torch.manual_seed(0)
    seg, cls, mal = (m.eval().to(device) for m in (SegModel(), LunaModel(), LunaModel()))
    seg_p = predictor(seg, device, lambda out: out, precision)
    cls_p = predictor(cls, device, lambda out: out[1][:, 1])     # fp32, as the analysis
    mal_p = predictor(mal, device, lambda out: out[1][:, 1])
    box = lungs_of(ct) if lungs else None
    index, rows, cols = ((box.index, box.row, box.col) if box is not None
                         else (slice(0, len(called)), slice(None), slice(None)))
    at = {"slice": index.start, "candidate": 0}

    def segment(batch):
        seg_p(batch)                                 # the U-Net's work, then what it calls
        k = at["slice"]
        at["slice"] += len(batch)
        return called[k:k + len(batch), rows, cols][:, None]

    def classify(chunks):
        cls_p(chunks)
        first = at["candidate"]
        at["candidate"] += len(chunks)
        return np.array([0.9 if (first + j) % 50 == 0 else 0.1 for j in range(len(chunks))])

    return segment, classify, mal_p


def analyse(ct, precision: str, lungs: bool, called: np.ndarray, device: torch.device
            ) -> dict:
    segment, classify, grade = stand_ins(ct, precision, called, lungs, device)
    result = analyze_ct(ct, segment, classify, grade, lungs=lungs)
    return {"seconds": result.seconds, "candidates": result.components,
            "segmented": result.segmented, "precision": precision, "lungs": lungs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--candidates", type=int, default=2000)
    p.add_argument("--book", action="store_true",
                   help="also fp32 in the box, and the book's configuration: every pixel, fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work", default="data-unversioned/bench-analyze")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print_machine(info)
    data_dir = os.path.join(args.work, f"luna-{args.slices}")
    if not os.path.exists(os.path.join(data_dir, "candidates.csv")):
        from luna_core.data.synth import write_synthetic_dataset

        write_synthetic_dataset(data_dir, 1, 0, size_xy=512,
                                slices=(args.slices, args.slices), negatives_per_series=20,
                                nodules_per_series=(3, 3), missing_series=0)
    from luna_core.data.candidates import series_on_disk

    (uid,) = sorted(series_on_disk(data_dir))
    t0 = time.perf_counter()
    ct = Ct.load(uid, data_dir)
    read_s = time.perf_counter() - t0
    called = called_volume(ct, args.candidates)
    device = torch.device(args.device)
    configs = [(choose_precision("auto", device), True)]
    if args.book:                # each of the two choices alone, then the book's
        if configs[0][0] != "fp32":
            configs.append(("fp32", True))
        configs.append(("fp32", False))
    results = []
    for precision, lungs in configs:
        r = analyse(ct, precision, lungs, called, device)
        r["seconds"] = {"read": read_s, **r["seconds"]}
        r["total"] = sum(r["seconds"].values())
        results.append(r)
        what = "box around the lungs" if lungs else "every pixel (the book)"
        print(f"\none CT of {ct.hu_a.shape[2]}x{ct.hu_a.shape[1]}x{ct.hu_a.shape[0]} voxels, "
              f"{what}, {precision} on {device}, torch threads {torch.get_num_threads()}: "
              f"{r['total']:.1f} s ({r['candidates']} candidates, "
              f"{100 * r['segmented']:.0f} % of the voxels segmented)")
        for stage, sec in r["seconds"].items():
            print(f"  {stage:9} {sec:7.1f} s  {100 * sec / r['total']:5.1f} %")
    total = results[0]["total"]
    print(f"\ntarget: at most 60 s -> {'met' if total <= 60 else 'NOT met'} ({total:.1f} s)")
    if len(results) > 1:
        print(f"the book's configuration / the analysis': {results[-1]['total'] / total:.2f}x")
    write_json(args.json, {"machine": info, "shape": list(ct.hu_a.shape), "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
