"""`luna-tui ctl RUN COMMAND`: command a running run and print what it acknowledged
(luna_core.run.send_command; the commands are luna_core.run.command_table.COMMANDS)."""

from __future__ import annotations

import argparse
import sys

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.run.command_table import COMMANDS, commands_said
    from luna_core.train.options import add_runs_dir

    p = parser(
        "ctl",
        f"Command a running run ({commands_said()}) and print what it acknowledged. Exit 0 "
        f"when it did; 2 when the run is not running or refuses the command; 1 when no "
        f"acknowledgement came in time.")
    p.add_argument("run", metavar="RUN_DIR|latest")
    p.add_argument("command", metavar="COMMAND",       # every command of the table
                   help="; ".join(f"{spec.name}: {spec.help}" for spec in COMMANDS))
    p.add_argument("values", nargs="*", metavar="KEY=VALUE",
                   help="for set: lr=X and/or momentum=Y")
    add_runs_dir(p)
    p.add_argument("--wait", type=float, default=120.0, metavar="S",
                   help="how long to wait for the run to acknowledge")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.errors import LunaInputError
    from luna_core.run.send_command import ctl

    try:
        return ctl(args.run, args.command, args.runs_dir, args.wait, values=args.values)
    except LunaInputError as exc:
        print(f"luna-tui ctl: {exc}", file=sys.stderr)
        return 2
