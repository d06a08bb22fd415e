"""`luna-tui attach [RUN_DIR | latest]`: the cockpit on a run started elsewhere (`luna-tui
--headless` under nohup, tmux or a batch system).

The same ``CockpitApp`` (same panes, same layout) over a ``RemoteLink``: the run's event file
is the snapshot, its control socket takes the commands. ``d`` detaches (the run goes on);
``q`` asks: detach (the default) or stop the run (it checkpoints, then stops). Ctrl+C and a
hang-up (SIGHUP, the SSH link dropped) detach. A run that is over, on another host or without
a control socket is read-only: the steering keys say why instead of acting.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from luna_core.errors import LunaInputError
from luna_core.run.compare import load_baseline
from luna_core.run.runs import resolve_run_dir
from luna_tui.app import Clock, CockpitApp
from luna_tui.images import image_widget
from luna_tui.images import resolve as resolve_images
from luna_tui.link.remote import RemoteCommands, RunFileSource, open_remote_link, open_run
from luna_tui.link.system_probe import RunProcessProbe, SystemReading
from luna_tui.model.endings import attach_closing_line
from luna_tui.terminal import terminal_problem

__all__ = ["RemoteCommands", "RunFileSource", "attach_cockpit", "build_attach_app", "farewell",
           "open_run"]


def build_attach_app(run_dir: str, *, clock: Clock | None = None,
                     system_probe: Callable[[], SystemReading] | None = None,
                     **app_kwargs: Any) -> CockpitApp:
    """The cockpit attached to the run in ``run_dir`` (history already read)."""
    link = open_remote_link(run_dir)
    own_probe = system_probe is None
    probe = system_probe or RunProcessProbe(link.source.process)
    return CockpitApp(link, clock=clock, system_probe=probe, own_probe=own_probe,
                      **app_kwargs)


def farewell(app: CockpitApp) -> str:
    """The line printed after the cockpit closes."""
    source = app.link.source
    pid = source.run.pid if source.run else "?"
    return attach_closing_line(source.snapshot(), source.run_dir, pid)


def attach_cockpit(target: str, runs_dir: str, *, images: str = "auto",
                   baseline: str | None = None, quiet: bool = False) -> int:
    """`luna-tui attach`'s work (luna_tui.subcommands.attach_cmd has its command line): the
    cockpit on the run ``target`` names until it is left, then the closing lines."""
    try:
        run_dir = resolve_run_dir(target, runs_dir)
        baseline_run = load_baseline(baseline, runs_dir)
        image_class = image_widget(resolve_images(images))   # before Textual starts
        app = build_attach_app(run_dir, handle_signals=True, baseline=baseline_run,
                               runs_dir=runs_dir, quiet=quiet, image_class=image_class)
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
        lines = summary.lines(previous_run(run_dir, runs_dir))
        print("\n".join(lines), file=sys.stderr)
    return int(app.return_code or 0)
