"""The synth command line, `luna-tui synth` and `python -m luna_core.data.synth`: its parser
and what it does with the parsed options. Standard library only until the options are parsed
(the writer, numpy and SimpleITK are imported then), so that `--help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from luna_core.data.synth.dataset_spec import DEMO_SET


def build_parser(prog: str = "python -m luna_core.data.synth") -> argparse.ArgumentParser:
    """The one synth command line: `luna-tui synth` and `python -m luna_core.data.synth`."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write a demo data set in the real LUNA16 layout (subset*/ .mhd/.raw, "
                    "candidates.csv, annotations.csv) that the model can learn from.")
    parser.add_argument("--out", required=True, help="folder to write (created if needed)")
    parser.add_argument("--series", type=int, default=DEMO_SET["series"],
                        help="number of CT series")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--size-xy", type=int, default=160, help="in-plane voxels per slice")
    parser.add_argument("--slices", type=int, nargs=2, default=DEMO_SET["slices"],
                        metavar=("MIN", "MAX"),
                        help="slices per series")
    parser.add_argument("--negatives-per-series", "--negatives", type=int,
                        default=DEMO_SET["negatives_per_series"],
                        help="class-0 candidates per series")
    parser.add_argument("--nodules", type=int, nargs=2, default=DEMO_SET["nodules_per_series"],
                        metavar=("MIN", "MAX"),
                        help="nodules per series")
    parser.add_argument("--subsets", type=int, default=2, help="subset folders")
    parser.add_argument("--flip-every", type=int, default=4,
                        help="every Nth series has x/y flipped (0: none)")
    parser.add_argument("--missing-series", type=int, default=1,
                        help="series listed in the CSVs but not written")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing data set in --out")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m luna_core.data.synth") -> int:
    return write_from_options(build_parser(prog).parse_args(argv), prog)


def write_from_options(args: argparse.Namespace, prog: str) -> int:
    """Write the set that ``args`` (``build_parser``'s) describes; 2 when it cannot be."""
    from luna_core.data.synth.writer import write_synthetic_dataset

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        summary = write_synthetic_dataset(
            args.out, args.series, args.seed, size_xy=args.size_xy, slices=tuple(args.slices),
            negatives_per_series=args.negatives_per_series,
            nodules_per_series=tuple(args.nodules), subsets=args.subsets,
            flip_every=args.flip_every, missing_series=args.missing_series,
            overwrite=args.overwrite, log=None if args.quiet else log)
    except (FileExistsError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.quiet:
        print(summary.describe())
    return 0
