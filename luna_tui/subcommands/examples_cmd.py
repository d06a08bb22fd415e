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
    KINDS_OF_TASK,
    examples_path,
    read_examples,
    saved_epochs,
)
from luna_tui.subcommands import parser

PNG_UPSAMPLE = 4
COLUMNS = ("#", "prob", "loss", "diam mm", "series", "centre xyz (mm)", "centre irc")
#: --task seg's: the slice's pixels found, missed and falsely marked, its recall.
SEG_COLUMNS = ("#", "missed px", "false px", "found px", "recall", "loss", "series", "slice")


def _rows(examples, kind: str) -> list[tuple[str, ...]]:
    if examples.task == "seg":
        return [(str(e.rank), str(e.pixels[1]), str(e.pixels[2]), str(e.pixels[0]),
                 f"{e.probability:.3f}" if e.is_nodule else "-", f"{e.loss:.3f}",
                 e.short_uid, str(e.center_irc[0]))
                for e in examples.of_kind(kind)]
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
        head = SEG_COLUMNS if examples.task == "seg" else COLUMNS
        right = 6 if examples.task == "seg" else 4          # numbers right, names left
        widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
        for r in [head, *rows]:
            out.append("  " + "  ".join(cell.rjust(w) if k < right else cell.ljust(w)
                                        for k, (cell, w) in enumerate(zip(r, widths))).rstrip())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_pngs(examples, kinds, out_dir: str) -> list[str]:
    from luna_tui.model.ct_image import any_image, views_of

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for kind in kinds:
        for e in examples.of_kind(kind):
            for view in views_of(examples):
                path = os.path.join(out_dir, f"E{examples.epoch:03d}-{kind}-{e.rank:02d}-"
                                             f"{view}.png")
                fine = min(e.vx_size_xyz) / PNG_UPSAMPLE       # square pixels, 4 a voxel
                any_image(examples, e, view, mm_per_px=fine).save(path)
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
        "less, a hit or a false alarm above it. A --task seg run's: the slices with the "
        "most missed and most falsely marked pixels; --png writes a close-up and the whole "
        "slice, pixels found green, missed magenta, falsely marked amber.")
    p.add_argument("run", metavar="RUN_DIR|latest")
    add_runs_dir(p)
    p.add_argument("--epoch", type=int, default=None,
                   help="which validation (default: the newest kept)")
    p.add_argument("--kind", choices=(*(k.replace("_", "-") for kinds in
                                        KINDS_OF_TASK.values() for k in kinds), "all"),
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
    kinds = examples.kinds if kind == "all" else (kind.replace("-", "_"),)
    if not set(kinds) <= set(examples.kinds):
        print(f"luna-tui examples: --kind {kind}: this run's kinds are "
              f"{', '.join(k.replace('_', '-') for k in examples.kinds)}", file=sys.stderr)
        return 2
    sys.stdout.write(table(examples, kinds))
    if png:
        try:
            written = write_pngs(examples, kinds, png)
        except OSError as exc:
            why = LunaInputError(f"cannot write the PNG files ({exc.strerror or exc})",
                                 exc.filename or png)
            print(f"luna-tui examples: {why}", file=sys.stderr)
            return 2
        from luna_tui.model.ct_image import views_of

        print(f"wrote {len(written)} PNG files to {png} ({', '.join(views_of(examples))} "
              "each)")
    return 0
