"""The book's remedies on the demo data: per epoch, LUNA16's CPM (with its 95 % interval) and
the nodule recall of a plain run, a ``--balanced`` run and a ``--balanced --augmented`` run,
side by side (chapter 12's comparison, in the terminal).

    .venv/bin/python benchmarks/remedies.py [--data-dir DIR] [--epochs 3] [--work DIR]
        [--arm "--balanced" --arm "--balanced --augmented"] [--no-plain]

Writes the demo set (``luna-tui synth`` defaults) if ``--data-dir`` has none, then runs
``--headless --epochs N`` once per arm in one runs folder, with the same seed: plain, and each
``--arm`` with ``--epoch-samples <training set size>`` (the book's 200,000 samples an epoch
would take hours on a CPU), and prints ``luna-tui compare`` of the runs plus, per run and
epoch, the CPM and whether the validation recall was at most 0.10 (with ~96 % of the demo's
samples negative, that is the cockpit's NODULES MISSED alarm). Results, not timings: the
machine's load does not change them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import machine_info, print_footer, print_machine

from luna_core.run.compare import compare_text, cpm_of, read_history
from luna_core.run.runs import list_runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data-unversioned/demo")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--work", default=None, help="runs folder (default: a temporary one)")
    p.add_argument("--arm", action="append", default=None, metavar="OPTIONS",
                   help="the options of a remedy run (--epoch-samples is added); repeat for "
                        "more (default: '--balanced' and '--balanced --augmented')")
    p.add_argument("--no-plain", action="store_true",
                   help="only the remedy runs (compared with the runs already in --work)")
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
    arms = [] if args.no_plain else [("plain", ["plain"])]
    for arm in args.arm or ["--balanced", "--balanced --augmented"]:
        options = arm.split()
        name = "+".join(o.lstrip("-") for o in options)
        arms.append((arm, options + ["--epoch-samples", str(len(trn)), name]))
    for name, extra in arms:
        t0 = time.perf_counter()
        code = subprocess.run(exe + common + extra, stdout=subprocess.DEVNULL).returncode
        print(f"{name}: exit {code}, {time.perf_counter() - t0:.0f} s")
        if code != 0:
            return code
    histories = [read_history(r.run_dir) for r in list_runs(work)]
    print()
    print(compare_text(histories))
    print("run                               epoch  CPM [95% CI]          sens@1FP  AUC    "
          "recall")
    for h in histories:
        for row in h.epochs:
            v = row.values
            recall = v.get("pr/recall") or 0.0
            cpm = cpm_of(v)
            sens = v.get("froc/sens_at_1fp")
            auc = v.get("roc/auc")
            print(f"{os.path.basename(h.run_dir):33s} E{row.epoch:<5d} {cpm:21s} "
                  f"{'-' if sens is None else f'{sens:.2f}':8s}  "
                  f"{'-' if auc is None else f'{auc:.3f}':6s} {recall:.3f}"
                  + (" NODULES MISSED" if recall <= 0.10 else ""))
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
