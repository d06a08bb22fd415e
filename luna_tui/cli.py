"""The `luna-tui` command: dispatches to the cockpit, --headless, or a sub-command.

Heavy modules (torch, textual) are imported only once a command needs them, so that
`luna-tui --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys

#: The sub-commands and what each does: `luna-tui --help` lists them from here.
SUBCOMMANDS = {
    "synth": "write a demo data set in the LUNA16 layout",
    "prepcache": "build the chunk store (resumable)",
    "check": "before a long run: is the data all there, what will it cost",
    "attach": "open the cockpit on a headless run",
    "ctl": "command a running run (pause, resume, checkpoint, stop, set lr=X)",
    "runs": "list runs with their state and best values",
    "compare": "runs side by side, per epoch",
    "examples": "a run's worst misses, false alarms and best hits (a table; --png slices)",
    "queue": "an experiment queue: add runs (a grid, ch. 12's preset), run them one by one",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _SUBCOMMAND_RUNNERS[argv[0]](argv[1:])
        return run_training(argv)
    except KeyboardInterrupt:
        return 130


def run_training(argv: list[str]) -> int:
    from luna_core.train.options import build_parser

    commands = " ".join(f"'luna-tui {name}': {what};" for name, what in SUBCOMMANDS.items())
    parser = build_parser(commands=commands.rstrip(";") + ".")
    options = parser.parse_args(argv)  # --help and usage errors exit here, fast
    if options.headless:
        from luna_core.headless import run_headless
        from luna_core.run.parentwatch import die_with_parent

        die_with_parent()           # a queue's child: SIGTERM (a clean stop) if its runner dies

        return run_headless(argv)
    from luna_tui.launch import run_cockpit

    return run_cockpit(argv)


def run_synth(argv: list[str]) -> int:
    from luna_core.data.synth import main as synth_main

    return synth_main(argv, prog="luna-tui synth")


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    """A sub-command's parser: `luna-tui NAME`, defaults shown in --help."""
    return argparse.ArgumentParser(prog=f"luna-tui {name}", description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def run_prepcache(argv: list[str]) -> int:
    from luna_core.train.options import add_data_dirs

    parser = _parser(
        "prepcache",
        "Build the chunk store of every series that has candidates (resumable).")
    add_data_dirs(parser, workers=True)
    args = parser.parse_args(argv)
    from luna_core.data.prepcache import run_prepcache as run

    return run(args.data_dir, args.cache_dir, args.num_workers, args.candidates_file)


def run_attach(argv: list[str]) -> int:
    from luna_tui.attach import run_attach as run

    return run(argv)


def run_runs(argv: list[str]) -> int:
    from luna_core.train.options import add_runs_dir

    parser = _parser(
        "runs",
        "List runs with their state, epoch, latest validation loss, % of nodules "
        "found and best values (CPM with its 95 % interval), fitted to the terminal's "
        "width.")
    parser.add_argument("run", nargs="?", default=None, metavar="RUN_DIR|latest",
                        help="one run: its summary (time, best epochs, checkpoints, how to "
                             "go on or compare it)")
    add_runs_dir(parser)
    parser.add_argument("--wide", action="store_true",
                        help="every column and the whole run path, however long the lines "
                             "(what a pipe gets anyway)")
    parser.add_argument("--sort", choices=("started", "cpm"), default="started",
                        help="order: when each run started, or its best CPM (best first; "
                             "runs without one last)")
    parser.add_argument("--tui", action="store_true",
                        help="the runs screen: filter, sort, mark and overlay runs, open one "
                             "in the cockpit, and the queue")
    args = parser.parse_args(argv)
    if args.tui:
        return _runs_screen(args.runs_dir)
    import os
    import shutil

    from luna_core.errors import LunaInputError
    from luna_core.run.compare import history_from_events
    from luna_core.run.listing import runs_lines
    from luna_core.run.runs import check_runs_dir, list_runs_with_events

    if args.run is not None:
        return _print_summary(args.run, args.runs_dir)
    try:
        check_runs_dir(args.runs_dir)
    except LunaInputError as exc:
        print(f"luna-tui runs: {exc}", file=sys.stderr)
        return 2
    problems: list[str] = []
    found = list_runs_with_events(args.runs_dir, problems)
    for problem in problems:          # a run that cannot be read hides no other
        print(f"luna-tui runs: warning: {problem}", file=sys.stderr)
    if not found:
        print(f"no runs under {args.runs_dir}")
        return 0
    histories = [history_from_events(info.run_dir, events) for info, events in found]
    if args.sort == "cpm":
        from luna_core.run.compare import by_best_cpm

        order = {id(h): i for i, h in enumerate(by_best_cpm(histories))}
        pairs = sorted(zip(found, histories), key=lambda fh: order[id(fh[1])])
        found, histories = [f for f, _h in pairs], [h for _f, h in pairs]
    fitted = not args.wide and (sys.stdout.isatty() or "COLUMNS" in os.environ)
    width = shutil.get_terminal_size().columns if fitted else None
    print("\n".join(runs_lines(found, histories, width)))
    return 0


def _runs_screen(runs_dir: str) -> int:
    from luna_tui.terminal import terminal_problem

    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui runs --tui: needs an interactive terminal ({problem}); "
              f"'luna-tui runs' prints the list", file=sys.stderr)
        return 2
    from luna_tui.runs_app import RunsApp

    chosen = RunsApp(runs_dir).run()
    if chosen is None:
        return 0
    _how, run_dir = chosen            # live: attached; ended: its history, read-only
    from luna_tui.attach import run_attach

    return run_attach([run_dir, "--runs-dir", runs_dir])


def _print_summary(target: str, runs_dir: str) -> int:
    from luna_core.errors import LunaInputError
    from luna_core.run.eventfile import read_events, run_event_file
    from luna_core.run.runs import resolve_run_dir
    from luna_core.run.summary import previous_run, summarise

    try:
        run_dir = resolve_run_dir(target, runs_dir)
        events = read_events(run_event_file(run_dir))
    except LunaInputError as exc:
        print(f"luna-tui runs: {exc}", file=sys.stderr)
        return 2
    summary = summarise(run_dir, events)
    print("\n".join(summary.lines(previous_run(run_dir, runs_dir))))
    return 0


def run_compare(argv: list[str]) -> int:
    from luna_core.errors import LunaInputError
    from luna_core.train.options import add_runs_dir

    parser = _parser(
        "compare",
        "Runs side by side: the options that differ, validation loss, LUNA16's CPM, "
        "AUC, nodule recall, precision and F1 per epoch, and the best of each with its "
        "epoch (the best CPM with its 95 % interval).")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directories ('latest': the newest under --runs-dir)")
    add_runs_dir(parser)
    parser.add_argument("--csv", nargs="?", const="-", default=None, metavar="FILE",
                        help="write the comparison as CSV to FILE (standard output: -), "
                             "with the FROC's points")
    parser.add_argument("--sort", choices=("given", "cpm"), default="given",
                        help="order: as named, or by best CPM (best first)")
    args = parser.parse_args(argv)
    from luna_core.fsutil import atomic_write
    from luna_core.run.compare import compare_csv, compare_text, read_history
    from luna_core.run.runs import resolve_run_dir

    try:
        histories = [read_history(resolve_run_dir(r, args.runs_dir, validated=True))
                     for r in args.runs]
    except LunaInputError as exc:
        print(f"luna-tui compare: {exc}", file=sys.stderr)
        return 2
    if args.sort == "cpm":
        from luna_core.run.compare import by_best_cpm

        histories = by_best_cpm(histories)
    if args.csv is None:
        sys.stdout.write(compare_text(histories))
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


def run_check(argv: list[str]) -> int:
    from luna_core.train.options import add_data_dirs

    parser = _parser(
        "check",
        "Before a long run: is the data all there, and what will it cost? Read "
        "only. Exit 0 when a run can start, 2 when it cannot (the reason first).")
    add_data_dirs(parser)
    parser.add_argument("--val-stride", type=int, default=10)
    args = parser.parse_args(argv)
    from luna_core.data.preflight import run_check as run

    return run(args.data_dir, args.cache_dir, args.candidates_file, args.val_stride)


def run_ctl(argv: list[str]) -> int:
    from luna_core.errors import LunaInputError
    from luna_core.run.command_table import COMMANDS, commands_said
    from luna_core.train.options import add_runs_dir

    parser = _parser(
        "ctl",
        f"Command a running run ({commands_said()}) and print what it acknowledged. Exit 0 "
        f"when it did; 2 when the run is not running or refuses the command; 1 when no "
        f"acknowledgement came in time.")
    parser.add_argument("run", metavar="RUN_DIR|latest")
    parser.add_argument("command", metavar="COMMAND",       # every command of the table
                        help="; ".join(f"{spec.name}: {spec.help}" for spec in COMMANDS))
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE",
                        help="for set: lr=X and/or momentum=Y")
    add_runs_dir(parser)
    parser.add_argument("--wait", type=float, default=120.0, metavar="S",
                        help="how long to wait for the run to acknowledge")
    args = parser.parse_args(argv)
    from luna_core.run.send_command import ctl

    try:
        return ctl(args.run, args.command, args.runs_dir, args.wait, values=args.values)
    except LunaInputError as exc:
        print(f"luna-tui ctl: {exc}", file=sys.stderr)
        return 2


def run_examples(argv: list[str]) -> int:
    from luna_core.train.options import add_runs_dir

    parser = _parser(
        "examples",
        "The candidates a run's validation got most wrong (and most right): the worst "
        "misses, the false alarms and the best hits of an epoch, with their probability, "
        "loss, diameter and where they are; --png writes their axial, coronal and sagittal "
        "slices (lung window, the nodule's diameter as a circle) for a report or a browser.")
    parser.add_argument("run", metavar="RUN_DIR|latest")
    add_runs_dir(parser)
    parser.add_argument("--epoch", type=int, default=None,
                        help="which validation (default: the newest kept)")
    parser.add_argument("--kind", choices=("misses", "false-alarms", "best", "all"),
                        default="all")
    parser.add_argument("--png", default=None, metavar="DIR",
                        help="write each example's slices through its centre as PNG files")
    args = parser.parse_args(argv)
    from luna_tui.examples_cli import examples_command

    return examples_command(args.run, args.runs_dir, args.epoch, args.kind, args.png)


def run_queue(argv: list[str]) -> int:
    from luna_tui.queue_cli import queue_command

    return queue_command(argv)


_SUBCOMMAND_RUNNERS = {   # tests/test_cli.py: the same names as SUBCOMMANDS
    "synth": run_synth,
    "prepcache": run_prepcache,
    "attach": run_attach,
    "runs": run_runs,
    "compare": run_compare,
    "check": run_check,
    "ctl": run_ctl,
    "examples": run_examples,
    "queue": run_queue,
}
