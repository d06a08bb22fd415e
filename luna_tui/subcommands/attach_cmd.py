"""`luna-tui attach [RUN_DIR | latest]`: the cockpit on a run started elsewhere (luna_tui.attach
opens it). Parsing imports neither Textual nor the cockpit."""

from __future__ import annotations

import argparse

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_runs_dir
    from luna_tui.images import MODES

    p = parser("attach",
               "Open the cockpit on a run started with 'luna-tui --headless': its "
               "history, then live. p pauses/resumes, c checkpoints, d detaches (the "
               "run goes on), q asks: detach or stop the run.")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN_DIR|latest",
                   help="a run directory, or 'latest': the newest run under --runs-dir")
    add_runs_dir(p, "where 'latest' looks for runs")
    p.add_argument("--quiet", action="store_true",
                   help="no terminal bell or desktop notification")
    p.add_argument("--images", choices=MODES, default="auto",
                   help="how CT examples are drawn; auto = half-blocks in tmux or screen "
                        "or when unsure, else what the terminal supports")
    p.add_argument("--baseline", default=None, metavar="RUN",
                   help="a run whose validation curves show beside this one's (b picks "
                        "one)")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_tui.attach import attach_cockpit

    return attach_cockpit(args.run, args.runs_dir, images=args.images,
                          baseline=args.baseline, quiet=args.quiet)
