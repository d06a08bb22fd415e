"""`luna-tui examples RUN`: a validation's worst misses, false alarms and best hits as a table,
and with ``--png DIR`` their slices as pictures, for someone without a graphics terminal
(the file: luna_core.run.example_file)."""

from __future__ import annotations

import argparse
import os
import sys

from luna_core.errors import LunaInputError
from luna_core.run.example_file import (
    KIND_NONE,
    KIND_TITLE,
    KINDS,
    examples_path,
    read_examples,
    saved_epochs,
)
from luna_tui.subcommands import parser

PNG_UPSAMPLE = 4
COLUMNS = ("#", "prob", "loss", "diam mm", "series", "centre xyz (mm)", "centre irc")


def _rows(examples, kind: str) -> list[tuple[str, ...]]:
    return [(str(e.rank), f"{e.probability:.3f}", f"{e.loss:.3f}",
             f"{e.diameter_mm:.1f}" if e.diameter_mm > 0 else "-", e.short_uid,
             "(" + ", ".join(f"{v:.1f}" for v in e.center_xyz) + ")",
             "(" + ", ".join(str(v) for v in e.center_irc) + ")")
            for e in examples.of_kind(kind)]


def table(examples, kinds) -> str:
    out = []
    for kind in kinds:
        rows = _rows(examples, kind)
        out.append(f"E{examples.epoch} {KIND_TITLE[kind]}: {len(rows)}")
        if not rows:
            out.extend([f"  {KIND_NONE[kind]}", ""])
            continue
        widths = [max(len(r[k]) for r in [COLUMNS, *rows]) for k in range(len(COLUMNS))]
        for r in [COLUMNS, *rows]:
            out.append("  " + "  ".join(cell.rjust(w) if k < 4 else cell.ljust(w)
                                        for k, (cell, w) in enumerate(zip(r, widths))).rstrip())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_pngs(examples, kinds, out_dir: str) -> list[str]:
    from luna_tui.model.ct_image import VIEWS, example_image

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for kind in kinds:
        for e in examples.of_kind(kind):
            for view in VIEWS:
                path = os.path.join(out_dir, f"E{examples.epoch:03d}-{kind}-{e.rank:02d}-"
                                             f"{view}.png")
                fine = min(e.vx_size_xyz) / PNG_UPSAMPLE       # square pixels, 4 a voxel
                example_image(examples, e, view, mm_per_px=fine).save(path)
                written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_runs_dir

    p = parser(
        "examples",
        "The candidates a run's validation got most wrong (and most right): the worst "
        "misses, the false alarms and the best hits of an epoch, with their probability, "
        "loss, diameter and where they are; --png writes their axial, coronal and sagittal "
        "slices (lung window, the nodule's diameter as a circle, a candidate without one "
        "marked at its centre) for a report or a browser. At 0.5: a miss scored 0.5 or "
        "less, a hit or a false alarm above it.")
    p.add_argument("run", metavar="RUN_DIR|latest")
    add_runs_dir(p)
    p.add_argument("--epoch", type=int, default=None,
                   help="which validation (default: the newest kept)")
    p.add_argument("--kind", choices=("misses", "false-alarms", "best", "all"),
                   default="all")
    p.add_argument("--png", default=None, metavar="DIR",
                   help="write each example's slices through its centre as PNG files")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return show_examples(args.run, args.runs_dir, args.epoch, args.kind, args.png)


def show_examples(target: str, runs_dir: str, epoch: int | None, kind: str,
                     png: str | None) -> int:
    from luna_core.run.runs import resolve_run_dir

    try:
        run_dir = resolve_run_dir(target, runs_dir, validated=True)   # as compare
        epochs = saved_epochs(run_dir)
        if not epochs:
            raise LunaInputError("no examples in this run (a validation keeps them; "
                                 "--examples 0 turns them off)", run_dir)
        if epoch is None:
            epoch = epochs[-1]
        elif epoch not in epochs:
            raise LunaInputError(f"no examples of E{epoch} (kept: "
                                 f"{', '.join(f'E{e}' for e in epochs)})", run_dir)
        examples = read_examples(examples_path(run_dir, epoch))
        if png and os.path.exists(png) and not os.path.isdir(png):
            raise LunaInputError("--png names a folder to write into; this is a file", png)
    except LunaInputError as exc:
        print(f"luna-tui examples: {exc}", file=sys.stderr)
        return 2
    kinds = KINDS if kind == "all" else (kind.replace("-", "_"),)
    sys.stdout.write(table(examples, kinds))
    if png:
        try:
            written = write_pngs(examples, kinds, png)
        except OSError as exc:
            why = LunaInputError(f"cannot write the PNG files ({exc.strerror or exc})",
                                 exc.filename or png)
            print(f"luna-tui examples: {why}", file=sys.stderr)
            return 2
        print(f"wrote {len(written)} PNG files to {png} (axial, coronal, sagittal each)")
    return 0
