"""The book's remedies on the demo data: nodule recall per epoch of a plain run and of a
``--balanced --augmented`` run, side by side (chapter 12's comparison, in the terminal).

    .venv/bin/python benchmarks/remedies.py [--data-dir DIR] [--epochs 3] [--work DIR]

Writes the demo set (``luna-tui synth`` defaults) if ``--data-dir`` has none, then runs
``--headless --epochs N`` twice in one runs folder, with the same seed: plain, and ``--balanced
--augmented --epoch-samples <training set size>`` (the book's 200,000 samples an epoch would
take hours on a CPU), and prints ``luna-tui compare`` of the two plus, per epoch, whether the
validation recall was at most 0.10 (with ~96 % of the demo's samples negative, that is the
cockpit's NODULES MISSED alarm). Results, not timings: the machine's load does not change them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import machine_info, print_footer, print_machine

from luna_core.run.compare import compare_text, read_history
from luna_core.run.runs import list_runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data-unversioned/demo")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--work", default=None, help="runs folder (default: a temporary one)")
    p.add_argument("--remedy", default="--balanced --augmented",
                   help="the options of the second run (--epoch-samples is added)")
    p.add_argument("--no-plain", action="store_true",
                   help="only the remedy run (compared with the newest plain run in --work)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine(machine_info())
    exe = [sys.executable, "-m", "luna_tui"]
    if not os.path.isfile(os.path.join(args.data_dir, "candidates.csv")):
        subprocess.run(exe + ["synth", "--out", args.data_dir, "-q"], check=True)
    work = args.work or tempfile.mkdtemp(prefix="luna-remedies-")
    cache = os.path.join(os.path.dirname(os.path.abspath(args.data_dir)), "demo-cache")
    common = ["--headless", "--data-dir", args.data_dir, "--cache-dir", cache,
              "--runs-dir", work, "--epochs", str(args.epochs), "--num-workers",
              str(args.num_workers), "--seed", "0"]
    from luna_core.data.dsets import LunaDataset

    trn = LunaDataset(val_stride=10, is_val=False, data_dir=args.data_dir, cache_dir=cache)
    remedy = args.remedy.split()
    arms = [] if args.no_plain else [("plain", ["plain"])]
    arms.append((" ".join(remedy), remedy + ["--epoch-samples", str(len(trn)), "remedies"]))
    for name, extra in arms:
        t0 = time.perf_counter()
        code = subprocess.run(exe + common + extra, stdout=subprocess.DEVNULL).returncode
        print(f"{name}: exit {code}, {time.perf_counter() - t0:.0f} s")
        if code != 0:
            return code
    histories = [read_history(r.run_dir) for r in list_runs(work)]
    print()
    print(compare_text(histories))
    for h in histories:
        missed = []
        for row in h.epochs:
            recall = row.values.get("pr/recall") or 0.0
            missed.append(f"E{row.epoch} recall {recall:.3f}"
                          + (" NODULES MISSED" if recall <= 0.10 else ""))
        print(f"{os.path.basename(h.run_dir):32s} " + " · ".join(missed))
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
