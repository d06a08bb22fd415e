"""`luna-tui attach [RUN_DIR | latest]`: the cockpit on a run started elsewhere (`luna-tui
--headless` under nohup, tmux or a batch system).

The same ``CockpitApp`` (same panes, same layout) over a ``RemoteLink``: the run's event file
is the snapshot, its control socket takes the commands. ``d`` detaches (the run goes on);
``q`` asks: detach (the default) or stop the run (it checkpoints, then stops). Ctrl+C and a
hang-up (SIGHUP, the SSH link dropped) detach. A run that is over, on another host or without
a control socket is read-only: the steering keys say why instead of acting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from luna_core.errors import LunaInputError
from luna_core.run.compare import load_baseline
from luna_core.run.runs import resolve_run_dir
from luna_tui.app import Clock, CockpitApp
from luna_tui.images import MODES, image_widget
from luna_tui.images import resolve as resolve_images
from luna_tui.link.remote import RemoteCommands, RunFileSource, open_remote_link, open_run
from luna_tui.link.system_probe import RunProcessProbe, SystemReading
from luna_tui.model.endings import attach_closing_line
from luna_tui.terminal import terminal_problem

__all__ = ["RemoteCommands", "RunFileSource", "build_attach_app", "farewell", "open_run",
           "run_attach"]


def build_attach_app(run_dir: str, *, clock: Clock | None = None,
                     system_probe: Callable[[], SystemReading] | None = None,
                     **app_kwargs: Any) -> CockpitApp:
    """The cockpit attached to the run in ``run_dir`` (history already read)."""
    link = open_remote_link(run_dir)
    own_probe = system_probe is None
    probe = system_probe or RunProcessProbe(link.source.process)
    return CockpitApp(link, clock=clock, system_probe=probe, own_probe=own_probe,
                      **app_kwargs)


def build_parser() -> argparse.ArgumentParser:
    from luna_core.train.options import add_runs_dir

    parser = argparse.ArgumentParser(
        prog="luna-tui attach", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Open the cockpit on a run started with 'luna-tui --headless': its "
                    "history, then live. p pauses/resumes, c checkpoints, d detaches (the "
                    "run goes on), q asks: detach or stop the run.")
    parser.add_argument("run", nargs="?", default="latest", metavar="RUN_DIR|latest",
                        help="a run directory, or 'latest': the newest run under --runs-dir")
    add_runs_dir(parser, "where 'latest' looks for runs")
    parser.add_argument("--quiet", action="store_true",
                        help="no terminal bell or desktop notification")
    parser.add_argument("--images", choices=MODES, default="auto",
                        help="how CT examples are drawn; auto = half-blocks in tmux or screen "
                             "or when unsure, else what the terminal supports")
    parser.add_argument("--baseline", default=None, metavar="RUN",
                        help="a run whose validation curves show beside this one's (b picks "
                             "one)")
    return parser


def farewell(app: CockpitApp) -> str:
    """The line printed after the cockpit closes."""
    source = app.link.source
    pid = source.run.pid if source.run else "?"
    return attach_closing_line(source.snapshot(), source.run_dir, pid)


def run_attach(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_dir = resolve_run_dir(args.run, args.runs_dir)
        baseline = load_baseline(args.baseline, args.runs_dir)
        image_class = image_widget(resolve_images(args.images))   # before Textual starts
        app = build_attach_app(run_dir, handle_signals=True, baseline=baseline,
                               runs_dir=args.runs_dir, quiet=args.quiet,
                               image_class=image_class)
    except LunaInputError as exc:
        print(f"luna-tui attach: {exc}", file=sys.stderr)
        return 2
    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui attach: the cockpit needs an interactive terminal ({problem}); "
              f"'luna-tui runs' lists runs without one", file=sys.stderr)
        return 2
    try:
        app.run()
    finally:
        app.link.close()
    print(f"luna-tui attach: {farewell(app)}", file=sys.stderr)
    if app.snap.ended:          # a run that ended: its summary, as headless ends with it
        from luna_core.run.eventfile import read_events, run_event_file
        from luna_core.run.summary import previous_run, summarise

        summary = summarise(run_dir, read_events(run_event_file(run_dir)))
        lines = summary.lines(previous_run(run_dir, args.runs_dir))
        print("\n".join(lines), file=sys.stderr)
    return int(app.return_code or 0)
