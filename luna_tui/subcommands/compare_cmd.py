"""`luna-tui compare RUN RUN...`: runs side by side, per epoch, as text or CSV
(luna_core.run.compare)."""

from __future__ import annotations

import argparse
import sys

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_runs_dir

    p = parser(
        "compare",
        "Runs side by side: the options that differ, validation loss, LUNA16's CPM, "
        "AUC, nodule recall, precision and F1 per epoch, and the best of each with its "
        "epoch (the best CPM with its 95 % interval).")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories ('latest': the newest under --runs-dir)")
    add_runs_dir(p)
    p.add_argument("--csv", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the comparison as CSV to FILE (standard output: -), "
                        "with the FROC's points")
    p.add_argument("--sort", choices=("given", "cpm"), default="given",
                   help="order: as named, or by best CPM (best first)")
    return p


def _tensorboard_folder(path: str) -> bool:
    """The TensorBoard folders beside a run (RUN-trn_cls-COMMENT, RUN-val_cls-COMMENT; a seg
    run's trn_seg, val_seg) that a
    glob such as runs/luna/*-balanced picks up with the runs: left out, not an error."""
    import glob
    import os

    return (os.path.isdir(path) and not os.path.exists(os.path.join(path, "events.jsonl"))
            and bool(glob.glob(os.path.join(path, "events.out.tfevents.*"))))


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.errors import LunaInputError
    from luna_core.fsutil import atomic_write
    from luna_core.run.compare import compare_csv, compare_text, read_history
    from luna_core.run.runs import resolve_run_dir

    targets = [r for r in args.runs if not _tensorboard_folder(r)]
    if not targets:
        print("luna-tui compare: only TensorBoard folders given (runs are the folders with "
              "an events.jsonl)", file=sys.stderr)
        return 2
    try:
        histories = [read_history(resolve_run_dir(r, args.runs_dir, validated=True))
                     for r in targets]
    except LunaInputError as exc:
        print(f"luna-tui compare: {exc}", file=sys.stderr)
        return 2
    if args.sort == "cpm":
        from luna_core.run.compare import by_best_cpm

        histories = by_best_cpm(histories)
    if args.csv is None:
        sys.stdout.write(compare_text(histories))
        paired = paired_lines(histories, [f"#{i}" for i in range(1, len(histories) + 1)])
        if paired:
            sys.stdout.write("\n" + "\n".join(paired) + "\n")
    elif args.csv == "-":
        sys.stdout.write(compare_csv(histories))
    else:
        try:
            with atomic_write(args.csv, text=True) as f:
                f.write(compare_csv(histories))
        except OSError as exc:
            why = LunaInputError(f"cannot write the CSV ({exc.strerror or exc})", args.csv)
            print(f"luna-tui compare: {why}", file=sys.stderr)
            return 2
        print(f"wrote {args.csv}")
    return 0


def paired_lines(histories, names: list[str], most: int = 8) -> list[str]:
    """luna_core.score.paired's lines for these runs; numpy is imported only when at least
    two of them kept their scores per candidate (`compare` of older runs starts as fast)."""
    from luna_core.run.compare import best_cpm_files

    if len(histories) < 2 or not any(best_cpm_files(histories)):
        return []
    from luna_core.score.paired import paired_lines as lines

    return lines(histories, names, most)

