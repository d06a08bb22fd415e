"""The `luna-tui` sub-commands, declared once in ``SUBCOMMANDS``: each one's name, its module
in this package and its line in `luna-tui --help`. luna_tui.cli dispatches from the table.

Every sub-command is a module ``NAME_cmd.py`` here with the same two functions:

- ``build_parser()``: its command line, ``prog`` `luna-tui NAME` (most through ``parser``, so
  that --help shows the defaults);
- ``run(argv) -> int``: parse first (so `--help` and a usage error never act), import what
  the work needs only then (torch, numpy and Textual are slow to import), do it, and return
  the exit status.

The work itself lives in luna_core when it is not the terminal's (the core never imports
luna_tui), here when it is short, and in a module of its own in luna_tui when a screen needs
it too (attach)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType


@dataclass(frozen=True)
class Subcommand:
    module: str        # its module in luna_tui.subcommands
    help: str          # its line in `luna-tui --help`


#: The sub-commands, in the order `luna-tui --help` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {
    "synth": Subcommand("synth_cmd", "write a demo data set in the LUNA16 layout"),
    "prepcache": Subcommand("prepcache_cmd", "build the chunk store (resumable)"),
    "check": Subcommand("check_cmd",
                        "before a long run: is the data all there, what will it cost"),
    "attach": Subcommand("attach_cmd", "open the cockpit on a headless run"),
    "ctl": Subcommand("ctl_cmd",
                      "command a running run (pause, resume, checkpoint, stop, set lr=X)"),
    "runs": Subcommand("runs_cmd", "list runs with their state and best values"),
    "compare": Subcommand("compare_cmd", "runs side by side, per epoch"),
    "examples": Subcommand("examples_cmd", "a run's worst misses, false alarms and best hits "
                                           "(a table; --png slices)"),
    "demo": Subcommand("demo_cmd", "the book's ch. 11 -> 12 story on the demo set in "
                                   "minutes: plain, balanced, augmented, compared"),
    "queue": Subcommand("queue_cmd", "an experiment queue: add runs (a grid, ch. 12's "
                                     "preset), run them one by one"),
    "analyze": Subcommand("analyze_cmd", "ch. 14 end to end: segment, group, classify, "
                                         "grade; the challenge's detection CPM"),
}


def subcommand_module(name: str) -> ModuleType:
    """The module of the sub-command ``name`` (imported now: each imports little)."""
    return import_module(f"{__name__}.{SUBCOMMANDS[name].module}")


def run_subcommand(name: str, argv: list[str]) -> int:
    return subcommand_module(name).run(argv)


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """A sub-command's parser: `luna-tui NAME`, defaults shown in --help."""
    return argparse.ArgumentParser(prog=f"luna-tui {name}", description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
