"""What the start-up check of a run's sources costs at LUNA16 scale (issue 21, item 12).

Simulated: 888 series (the release's count) in 10 subset folders, each a real MetaImage
header with a small .raw of the size it declares (the check reads the header and stats the
.raw; it never reads voxels, so the .raw's size does not change its cost), and a candidate
list of 100 rows per series. Times ``check_sources`` over the training and validation data
sets with no chunk store built (every series checked: the worst case, a first run), cold
(caches dropped when run as root) and warm, and ``luna-tui check``'s own pass for comparison.

    python benchmarks/source_check.py [--series 888]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine_info, print_machine

from luna_core.data.candidates import clear_cache
from luna_core.data.synth import CANDIDATES_HEADER, UID_PREFIX

HEADER = """ObjectType = Image
NDims = 3
BinaryData = True
BinaryDataByteOrderMSB = False
CompressedData = False
TransformMatrix = 1 0 0 0 1 0 0 0 1
Offset = -180 -180 -300
CenterOfRotation = 0 0 0
AnatomicalOrientation = RAI
ElementSpacing = 0.7 0.7 2.5
DimSize = 16 16 8
ElementType = MET_SHORT
ElementDataFile = {raw}
"""


def write_set(root: Path, n: int, rows: int) -> None:
    rng = np.random.default_rng(0)
    lines = [CANDIDATES_HEADER]
    for k in range(n):
        uid = f"{UID_PREFIX}{10**20 + k}"
        sub = root / f"subset{k % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{uid}.mhd").write_text(HEADER.format(raw=f"{uid}.raw"))
        (sub / f"{uid}.raw").write_bytes(b"\0" * (16 * 16 * 8 * 2))
        for _ in range(rows):
            x, y = rng.uniform(-178, -170, 2)
            z = rng.uniform(-298, -282)
            lines.append(f"{uid},{x:.3f},{y:.3f},{z:.3f},{int(rng.random() < 0.003)}")
    (root / "candidates.csv").write_text("\n".join(lines) + "\n")
    (root / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--series", type=int, default=888)
    p.add_argument("--rows", type=int, default=100)
    args = p.parse_args()
    from luna_core.data.loader import make_datasets
    from luna_core.data.preflight import check, check_sources

    print_machine(machine_info())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "luna"
        write_set(root, args.series, args.rows)
        clear_cache()
        t0 = time.perf_counter()
        trn, val = make_datasets(10, str(root), str(Path(tmp) / "cache"), None)
        made = time.perf_counter() - t0
        for label in ("cold", "warm"):
            cold = drop_caches() if label == "cold" else False
            t0 = time.perf_counter()
            n = check_sources((trn, val))
            took = time.perf_counter() - t0
            note = "" if cold or label == "warm" else " (caches not dropped: not root)"
            print(f"check_sources {label}{note}: {n} series in {took:.2f} s")
        t0 = time.perf_counter()
        check(str(root), str(Path(tmp) / "cache"))
        print(f"luna-tui check: {time.perf_counter() - t0:.2f} s; "
              f"make_datasets with the check: {made:.2f} s")


if __name__ == "__main__":
    main()
