"""`luna-tui prepcache`: build the chunk store of every series that has candidates
(luna_core.data.prepcache; resumable)."""

from __future__ import annotations

import argparse

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_data_dirs

    p = parser("prepcache",
               "Build the chunk store of every series that has candidates (resumable).")
    add_data_dirs(p, workers=True)
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.data.prepcache import run_prepcache

    return run_prepcache(args.data_dir, args.cache_dir, args.num_workers, args.candidates_file)
