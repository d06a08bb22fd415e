"""`luna-tui demo`: the book's ch. 11 -> ch. 12 story on the demo set, in minutes on a CPU.

Writes the demo set if its folder has none, queues the story's runs (luna_core.run.demo) in
its runs folder unless they are queued already, and works through that queue as `luna-tui
queue run` does: an interrupted demo goes on where it stopped when started again. In a
terminal the cockpit follows each run (attached to it: q leaves the cockpit, the demo goes on
headless); without one, or with --headless, each run's epoch lines are printed. Ends with
`luna-tui compare` of the story's runs."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading

from luna_tui.subcommands import parser

PROG = "luna-tui demo"
#: What a run's console says that the demo prints (headless): epochs' metrics, its score,
#: alarms, warnings and errors, and its end.
_ECHOED = re.compile(r" E\d+ (trn|val)|WARNING|ERROR|NODULES|run (finished|stopped|failed)|"
                     r"Traceback|Error")


def build_parser() -> argparse.ArgumentParser:
    p = parser("demo", "The book's ch. 11 -> ch. 12 story in about 10 minutes of CPU "
                       "training: a plain run that misses every nodule while its loss "
                       "falls, then the balanced and the augmented runs that find them; "
                       "then 'luna-tui compare' of the three. Writes the demo set first if "
                       "--out has none. Started again, it goes on where it stopped.")
    p.add_argument("--out", default="data-unversioned/demo",
                   help="the demo set's folder (written if it has no candidates.csv)")
    p.add_argument("--cache-dir", default=None,
                   help="its chunk store (default: the --out folder's name + '-cache')")
    p.add_argument("--seed", type=int, default=0,
                   help="the demo set's seed, when it is written (the runs' seed is 0)")
    p.add_argument("--runs-dir", default="runs/demo",
                   help="where the story's runs and its queue go")
    p.add_argument("--headless", action="store_true",
                   help="no cockpit: print each run's epoch lines")
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from luna_core.errors import LunaInputError

    out = args.out.rstrip("/") or "."
    cache_dir = args.cache_dir or f"{out}-cache"
    try:
        if _write_set(out, args.seed) != 0:
            return 2
        _queue_story(args.runs_dir, out, cache_dir)
    except LunaInputError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from luna_tui.terminal import terminal_problem

    cockpit = not args.headless and terminal_problem() is None
    failures = _run_story(args.runs_dir, cockpit)
    if cockpit:                  # the runner's lines went under the cockpit: its outcome
        _print_queue(args.runs_dir)
    _print_comparison(args.runs_dir)
    return 1 if failures else 0


def _older_synth_set(out: str) -> bool:
    """Whether ``out`` holds a set an older `luna-tui synth` wrote (its synth.json says an
    earlier format): one whose nodules brightness alone finds (issue 30)."""
    import json

    from luna_core.data.synth.dataset_spec import MANIFEST_FORMAT, MANIFEST_JSON

    try:
        with open(os.path.join(out, MANIFEST_JSON), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False                  # not synth's (real data, or a hand-made set): kept
    return isinstance(manifest, dict) and manifest.get("format") != MANIFEST_FORMAT


def _write_set(out: str, seed: int) -> int:
    """The demo set in ``out`` unless one is there (0), else what synth returns. A set of an
    older `luna-tui synth` is written anew (synth removes the files it listed)."""
    older = _older_synth_set(out)
    if os.path.isfile(os.path.join(out, "candidates.csv")) and not older:
        print(f"{PROG}: the demo set in {out} (written before; --seed applies to a new "
              f"folder only)", flush=True)
        return 0
    from luna_core.data.synth.command_line import build_parser as synth_parser
    from luna_core.data.synth.command_line import write_from_options

    print(f"{PROG}: writing the demo set (seed {seed}) to {out}"
          + (" over the older one there" if older else ""), flush=True)
    options = synth_parser(prog=PROG).parse_args(
        ["--out", out, "--seed", str(seed), "-q", *(["--overwrite"] if older else [])])
    return write_from_options(options, PROG)


def _queue_story(runs_dir: str, data_dir: str, cache_dir: str) -> None:
    """The story's runs in the queue of ``runs_dir``, unless they are there already."""
    from luna_core.run import queue as qu
    from luna_core.run.demo import DEMO_RUNS, demo_entries

    qu.check_runs_dir(runs_dir)
    names = names_in_order()
    with qu.editing(runs_dir) as q:
        if any(e.argv and e.argv[0] in names for e in q.entries):
            print(f"{PROG}: the story is queued in {runs_dir} already: going on", flush=True)
            return
        for argv in demo_entries(data_dir, cache_dir):
            q.add(argv)
    print(f"{PROG}: queued {len(DEMO_RUNS)} runs in {runs_dir} "
          f"({', '.join(names)})", flush=True)


def names_in_order() -> list[str]:
    from luna_core.run.demo import DEMO_RUNS

    return [comment for comment, _own in DEMO_RUNS]


def _run_story(runs_dir: str, cockpit: bool) -> int:
    """Work through the queue (the runner in a thread); the cockpit follows each run in the
    foreground, or the runs' lines are printed. Ctrl+C (or SIGTERM) stops the run in progress
    with a checkpoint. Returns how many runs failed."""
    from luna_core.run import queue as qu
    from luna_tui.subcommands.queue_cmd import launcher

    stopping = threading.Event()
    headless = threading.Event()
    if not cockpit:
        headless.set()

    def echo(line: str) -> None:
        if headless.is_set() and _ECHOED.search(line):
            print(line, flush=True)

    def on_signal(signum, _frame):
        if not stopping.is_set():
            os.write(2, f"{signal.Signals(signum).name}: stopping the run in progress with a "
                        f"checkpoint; '{PROG}' again goes on\n".encode())
        stopping.set()

    failures: list[int] = []

    def work() -> None:
        failures.append(qu.run_queue(runs_dir, launcher(runs_dir, stopping, echo=echo),
                                     say=lambda line: print(line, flush=True),
                                     should_stop=stopping.is_set))

    previous = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    runner = threading.Thread(target=work, name="demo-queue", daemon=True)
    runner.start()
    try:
        if cockpit:
            _follow(runs_dir, runner, stopping, headless)
        while runner.is_alive():
            runner.join(0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return failures[0] if failures else 1


def _follow(runs_dir: str, runner: threading.Thread, stopping: threading.Event,
            headless: threading.Event) -> None:
    """The cockpit on each run as the queue starts it, until the queue is done or the cockpit
    is left by hand (then the demo goes on headless)."""
    from luna_core.run import queue as qu
    from luna_tui.demo_cockpit import follow_run

    shown: set[str] = set()
    while runner.is_alive() and not stopping.is_set():
        run_dir = next((e.run_dir for e in qu.load(runs_dir).entries
                        if e.state == qu.RUNNING and e.run_dir), None)
        if run_dir is None or run_dir in shown:
            runner.join(0.3)
            continue
        shown.add(run_dir)
        if not follow_run(run_dir, runs_dir):        # left by hand
            headless.set()
            print(f"{PROG}: the cockpit is closed; the demo goes on here (Ctrl+C stops it, "
                  f"'{PROG}' again goes on; 'luna-tui attach latest --runs-dir {runs_dir}' "
                  f"shows a run)", flush=True)
            return


def _print_queue(runs_dir: str) -> None:
    from luna_core.run import queue as qu

    for e in qu.load(runs_dir).entries:
        reason = f": {e.reason}" if e.reason else ""
        print(f"#{e.id} {e.argv[0] if e.argv else ''} {e.state}{reason}"
              + (f" ({e.run_dir})" if e.run_dir else ""), flush=True)


def _print_comparison(runs_dir: str) -> None:
    from luna_core.run.compare import compare_text, read_history
    from luna_core.run.runs import list_runs

    names = names_in_order()
    runs = [r for r in list_runs(runs_dir)
            if any(r.run_dir.endswith(f"-{name}") for name in names)]
    if not runs:
        return
    histories = [read_history(r.run_dir) for r in runs]
    print()
    print(compare_text(histories), flush=True)
    from luna_tui.subcommands.compare_cmd import paired_lines

    paired = paired_lines(histories, [f"#{i}" for i in range(1, len(histories) + 1)])
    if paired:
        print("\n".join(paired), flush=True)
