"""`luna-tui analyze` on one real-sized CT: seconds per stage (read, segment, group,
classify, grade) with untrained models of the real sizes (their speed does not depend on
their weights; a trained segmentation calls fewer pixels, so grouping and classifying get
cheaper, not dearer: the untrained U-Net here is given a bias that calls ~0.5 % of the
pixels, about what the book's segmentation calls).

    .venv/bin/python benchmarks/analyze_ct.py [--slices 300] [--threads 0] [--json FILE]

The CT is simulated: a synthetic LUNA-format series of 512 x 512 x ``--slices`` voxels
(written once in ``--work``), read back through SimpleITK as the analysis reads any series.
Target: at most 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import machine_info, print_machine, write_json  # noqa: E402

from luna_core.data.ct import Ct  # noqa: E402
from luna_core.score.pipeline import analyze_ct  # noqa: E402
from luna_core.train.model import LunaModel  # noqa: E402
from luna_core.train.unet import SegModel  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
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
    torch.manual_seed(0)
    seg, cls, mal = SegModel().eval(), LunaModel().eval(), LunaModel().eval()

    def segment(batch):
        with torch.no_grad():
            out = seg(torch.as_tensor(batch))
        # untrained: call the top ~0.5 % of each slice's pixels, as a trained model might
        flat = out.flatten(1)
        cut = torch.quantile(flat, 0.995, dim=1, keepdim=True)
        return (flat >= cut).float().reshape(out.shape).numpy()

    def prob(model):
        def predict(chunks):
            with torch.no_grad():
                return model(torch.as_tensor(chunks))[1][:, 1].numpy()
        return predict

    t0 = time.perf_counter()
    ct = Ct.load(uid, data_dir)
    read_s = time.perf_counter() - t0
    result = analyze_ct(ct, segment, prob(cls), prob(mal))
    stages = {"read": read_s, **result.seconds}
    total = sum(stages.values())
    print(f"\none CT of {ct.hu_a.shape[2]}x{ct.hu_a.shape[1]}x{ct.hu_a.shape[0]} voxels, "
          f"torch threads {torch.get_num_threads()}: {total:.1f} s "
          f"({result.components} candidates)")
    for stage, s in stages.items():
        print(f"  {stage:9} {s:7.1f} s  {100 * s / total:5.1f} %")
    print(f"  target: at most 60 s -> {'met' if total <= 60 else 'NOT met'}")
    write_json(args.json, {"machine": info, "seconds": stages, "total": total,
                           "candidates": result.components, "shape": list(ct.hu_a.shape)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
