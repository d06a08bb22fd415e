"""`luna-tui check`: before a long run, is the data all there and what will it cost
(luna_core.data.preflight). Read only."""

from __future__ import annotations

import argparse

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_data_dirs

    p = parser(
        "check",
        "Before a long run: is the data all there, and what will it cost? Read "
        "only. Exit 0 when a run can start, 2 when it cannot (the reason first).")
    add_data_dirs(p)
    p.add_argument("--val-stride", type=int, default=10,
                   help="every Nth candidate validates, as the run's option")
    p.add_argument("--batch-size", type=int, default=None,
                   help="the batch size whose speed the cost line uses, as the run's option "
                        "(default: 32; --task seg: 16)")
    p.add_argument("--task", choices=("nodule", "seg"), default="nodule",
                   help="seg: the segmentation run's split, cost and cache instead of the "
                        "classifier's, and the nodule masks (the book's rule): which are "
                        "empty, which grew into tissue (reads every CT with a nodule: minutes "
                        "on the real release)")
    p.add_argument("--runs-dir", default="runs",
                   help="where this machine's runs are: the cost line takes their measured "
                        "speed (a guess without one)")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.data.preflight import run_check

    return run_check(args.data_dir, args.cache_dir, args.candidates_file, args.val_stride,
                     runs_dir=args.runs_dir, task=args.task,
                     batch_size=args.batch_size or (16 if args.task == "seg" else 32))
