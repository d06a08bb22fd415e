"""The in-process cockpit's entry point: `luna-tui` in a terminal trains in a thread of the
cockpit (``build_cockpit``, ``run_cockpit``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from luna_core.run.command_table import CommandChannel
from luna_tui.app import Clock, CockpitApp
from luna_tui.images import image_widget
from luna_tui.images import resolve as resolve_images
from luna_tui.link.local import LocalLink
from luna_tui.link.system_probe import SystemReading
from luna_tui.model.collector import EventCollector
from luna_tui.model.endings import cockpit_closing_line
from luna_tui.terminal import prepare_worker_processes, terminal_problem


def build_cockpit(sys_argv: list[str], *, clock: Clock | None = None,
                  system_probe: Callable[[], SystemReading] | None = None,
                  **app_kwargs: Any) -> CockpitApp:
    """The app for an in-process training run with ``sys_argv`` (the headless options)."""
    channel = CommandChannel()
    collector = EventCollector()

    def train() -> int:
        from luna_core.training import LunaTrainingApp  # lazily: heavy, and may be absent

        # interactive: a non-finite loss pauses the run (the user decides) instead of
        # stopping it
        return LunaTrainingApp(sys_argv=list(sys_argv), sinks=[collector],
                               commands=channel, interactive=True).main()

    return CockpitApp(LocalLink(collector, channel, runner=train),
                      clock=clock, system_probe=system_probe, **app_kwargs)


def run_cockpit(sys_argv: list[str]) -> int:
    """Open the cockpit and train in a thread; returns the trainer's exit code."""
    problem = terminal_problem()
    if problem is not None:
        print(f"luna-tui: the cockpit needs an interactive terminal ({problem}); "
              f"use --headless", file=sys.stderr)
        return 2
    from luna_core.errors import LunaInputError
    from luna_core.run.compare import load_baseline
    from luna_core.train.options import parse_options

    options, _given = parse_options(list(sys_argv))
    try:       # before training starts: a wrong --baseline is a one-line error
        baseline = load_baseline(options.baseline, options.runs_dir)
    except LunaInputError as exc:
        print(f"luna-tui: --baseline: {exc}", file=sys.stderr)
        return 2
    prepare_worker_processes()
    image_class = image_widget(resolve_images(options.images))   # before Textual starts

    def preflight() -> str:
        from luna_core.data.preflight import check

        return check(options.data_dir, options.cache_dir, options.candidates_file,
                     options.val_stride).text()

    app = build_cockpit(sys_argv, handle_signals=True, baseline=baseline,
                        runs_dir=options.runs_dir, quiet=options.quiet, preflight=preflight,
                        image_class=image_class)
    app.run()
    code = app.exit_code() if app.return_code is None else app.return_code
    if app.failure_traceback:
        print(app.failure_traceback.rstrip(), file=sys.stderr)
    snap = app.source.snapshot()
    line = cockpit_closing_line(snap, app.failure)
    if line is not None:
        print(f"luna-tui: {line}", file=sys.stderr)
    if snap.summary:                # the run's summary, as a headless run ends with it
        from luna_core.run.summary import compare_line, previous_run

        before = previous_run(snap.run_dir, options.runs_dir) if snap.run_dir else None
        more = [compare_line(before, snap.run_dir)] if before else []
        print("\n".join([*snap.summary, *more]), file=sys.stderr)
    return int(code or 0)
