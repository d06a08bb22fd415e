"""`luna-tui synth`: a demo data set in the LUNA16 layout. The command line is the core's
(luna_core.data.synth.command_line, also `python -m luna_core.data.synth`) under this name."""

from __future__ import annotations

import argparse

PROG = "luna-tui synth"


def build_parser() -> argparse.ArgumentParser:
    from luna_core.data.synth.command_line import build_parser as synth_parser

    return synth_parser(prog=PROG)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.data.synth.command_line import write_from_options

    return write_from_options(args, PROG)
