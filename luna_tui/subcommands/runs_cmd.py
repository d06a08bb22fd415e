"""`luna-tui runs [RUN]`: the runs under --runs-dir with their state and best values, one
run's summary (luna_core.run.summary), or with --tui the runs screen (luna_tui.runs_app).
No torch here."""

from __future__ import annotations

import argparse
import sys

from luna_tui.subcommands import parser


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_runs_dir

    p = parser(
        "runs",
        "List runs with their state, epoch, latest validation loss, % of nodules "
        "found and best values (CPM with its 95 % interval), fitted to the terminal's "
        "width.")
    p.add_argument("run", nargs="?", default=None, metavar="RUN_DIR|latest",
                   help="one run: its summary (time, best epochs, checkpoints, how to "
                        "go on or compare it)")
    add_runs_dir(p)
    p.add_argument("--wide", action="store_true",
                   help="every column and the whole run path, however long the lines "
                        "(what a pipe gets anyway)")
    p.add_argument("--sort", choices=("started", "cpm"), default="started",
                   help="order: when each run started, or its best CPM (best first; "
                        "runs without one last)")
    p.add_argument("--tui", action="store_true",
                   help="the runs screen: filter, sort, mark and overlay runs, open one "
                        "in the cockpit, and the queue")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.tui:
        return _runs_screen(args.runs_dir)
    if args.run is not None:
        return _print_summary(args.run, args.runs_dir)
    return _print_list(args.runs_dir, args.sort, args.wide)


def _print_list(runs_dir: str, sort: str, wide: bool) -> int:
    import os
    import shutil

    from luna_core.errors import LunaInputError
    from luna_core.run.compare import history_from_events
    from luna_core.run.listing import runs_lines
    from luna_core.run.runs import check_runs_dir, list_runs_with_events

    try:
        check_runs_dir(runs_dir)
    except LunaInputError as exc:
        print(f"luna-tui runs: {exc}", file=sys.stderr)
        return 2
    problems: list[str] = []
    found = list_runs_with_events(runs_dir, problems)
    for problem in problems:          # a run that cannot be read hides no other
        print(f"luna-tui runs: warning: {problem}", file=sys.stderr)
    if not found:
        print(f"no runs under {runs_dir}")
        return 0
    histories = [history_from_events(info.run_dir, events) for info, events in found]
    if sort == "cpm":
        from luna_core.run.compare import by_best_cpm

        order = {id(h): i for i, h in enumerate(by_best_cpm(histories))}
        pairs = sorted(zip(found, histories), key=lambda fh: order[id(fh[1])])
        found, histories = [f for f, _h in pairs], [h for _f, h in pairs]
    fitted = not wide and (sys.stdout.isatty() or "COLUMNS" in os.environ)
    width = shutil.get_terminal_size().columns if fitted else None
    from luna_core.train.options import option_defaults

    print("\n".join(runs_lines(found, histories, width, option_defaults())))
    from luna_tui.subcommands.compare_cmd import paired_lines

    paired = paired_lines(histories, [os.path.basename(h.run_dir) for h in histories],
                          most=3)
    if paired and width:
        import textwrap

        paired = [w for line in paired for w in textwrap.wrap(
            line, width, initial_indent=" " * (len(line) - len(line.lstrip())),
            subsequent_indent="      ", break_on_hyphens=False)]
    if paired:
        print("\n" + "\n".join(paired))
    return 0


def _runs_screen(runs_dir: str) -> int:
    from luna_tui.terminal import terminal_problem

    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui runs --tui: needs an interactive terminal ({problem}); "
              f"'luna-tui runs' prints the list", file=sys.stderr)
        return 2
    from luna_tui.runs_app import RunsApp
    from luna_tui.subcommands import attach_cmd

    opened = None
    while True:             # the cockpit left with q: back to the runs, the cursor on its run
        chosen = RunsApp(runs_dir, opened).run()
        if chosen is None:
            return 0
        _how, opened = chosen            # live: attached; ended: its history, read-only
        code = attach_cmd.run([opened, "--runs-dir", runs_dir])
        if code != 0:
            return code


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
    live = not summary.state and _alive(run_dir, events)
    print("\n".join(summary.lines(None if live else previous_run(run_dir, runs_dir),
                                   live=live)))
    return 0


def _alive(run_dir: str, events) -> bool:
    """Whether the run is live, by the run listing's own rule (luna_core.run.runs)."""
    from luna_core.run.runs import RUNNING, summarize

    return summarize(run_dir, events).state == RUNNING
