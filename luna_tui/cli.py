"""The `luna-tui` command: dispatches to the cockpit, --headless, or a sub-command (the table
of them and their modules: luna_tui.subcommands).

Heavy modules (torch, textual) are imported only once a command needs them, so that
`luna-tui --help` answers at once.
"""

from __future__ import annotations

import sys

from luna_tui.subcommands import SUBCOMMANDS, run_subcommand

__all__ = ["SUBCOMMANDS", "main", "run_training"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return run_subcommand(argv[0], argv[1:])
        return run_training(argv)
    except KeyboardInterrupt:
        return 130


def run_training(argv: list[str]) -> int:
    from luna_core.train.options import build_parser

    commands = " ".join(f"'luna-tui {name}': {spec.help};" for name, spec in SUBCOMMANDS.items())
    parser = build_parser(commands=commands.rstrip(";") + ".")
    options = parser.parse_args(argv)  # --help and usage errors exit here, fast
    if options.headless:
        from luna_core.headless import run_headless
        from luna_core.run.parentwatch import die_with_parent

        die_with_parent()           # a queue's child: SIGTERM (a clean stop) if its runner dies

        return run_headless(argv)
    from luna_tui.launch import run_cockpit

    return run_cockpit(argv)
