"""`luna-tui analyze`: the book's ch. 14 end to end (segment, group, classify, grade) over a
set of series, scored as the LUNA16 challenge scores detection (luna_core.analysis)."""

from __future__ import annotations

import argparse
import sys

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_data_dirs

    p = parser(
        "analyze",
        "The book's ch. 14 end to end: for each series, segment its slices (--seg; the box "
        "around the lungs unless --whole-slices), group the called pixels into candidates, "
        "classify each (--cls) and grade it (--mal); "
        "then the challenge's detection CPM over every annotated nodule (a nodule nothing "
        "found is a miss) beside the candidate list's, and the book's table. Writes "
        "OUT/detections.csv (the submission format), OUT/summary.json, OUT/series/ (each "
        "series once: a killed analysis goes on where it stopped) and an event file, so "
        "`luna-tui runs` lists it and `luna-tui attach OUT` shows it.")
    p.add_argument("--seg", required=True, metavar="RUN|CHECKPOINT",
                   help="a --task seg run (its best.pt) or checkpoint")
    p.add_argument("--cls", required=True, metavar="RUN|CHECKPOINT",
                   help="a nodule classifier run (its best.pt) or checkpoint")
    p.add_argument("--mal", default=None, metavar="RUN|CHECKPOINT",
                   help="a --task malignancy run or checkpoint (grades what is found)")
    p.add_argument("--series", default="val", metavar="val|all|UID,...",
                   help="val: the classifier run's validation series (it must have split by "
                        "series); all; or series uids, comma-separated")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the outputs go (default: RUNS_DIR/analysis/<series>-<a hash of "
                        "the models and settings>, so the same command goes on where a "
                        "killed one stopped)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR",
                   help="under which the default --out goes (`luna-tui runs` lists it)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the models run")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="the segmentation's arithmetic; auto: bf16 where the device has it "
                        "in hardware (a GPU, a CPU with AVX-512 BF16 or AMX), else fp32 (the "
                        "classifiers always compute in fp32: their probabilities are ranked)")
    p.add_argument("--whole-slices", action="store_true",
                   help="segment every pixel of every slice, as the book (default: the box "
                        "around the lungs, found from the air inside the body)")
    add_data_dirs(p)
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.analysis import run_analysis
    from luna_core.errors import LunaInputError

    try:
        run_analysis(args.data_dir, args.out, args.seg, args.cls, args.mal, args.series,
                     args.device, args.precision, lungs=not args.whole_slices,
                     runs_dir=args.runs_dir, say=lambda line: print(line, flush=True))
    except LunaInputError as exc:
        print(f"luna-tui analyze: {exc}", file=sys.stderr)
        return 2
    return 0
