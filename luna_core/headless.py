"""`luna-tui --headless`: the training loop with console log lines and signal handling.

- SIGINT / SIGTERM: stop at the next batch boundary, checkpoint, exit 130 / 143 (said on
  stderr as the signal arrives). A second SIGINT exits at once (checkpoints are written
  atomically, so the last one stays intact).
- SIGUSR1: write a checkpoint now and go on.
- SIGHUP (a dropped SSH session, when not under nohup): like SIGTERM, exit 129.

A run that started ends with its summary (luna_core.run.summary) as the last lines.
"""

from __future__ import annotations

import os
import signal
import sys

from luna_core.run.command_table import CommandChannel
from luna_core.run.sinks import ConsoleSink
from luna_core.run.summary import RunSummary, previous_run

EXIT_SIGINT = 128 + signal.SIGINT


def run_headless(argv: list[str], extra_sinks=None) -> int:
    from luna_core.training import LunaTrainingApp

    commands = CommandChannel()
    summary = RunSummary()
    app = LunaTrainingApp(sys_argv=argv, sinks=[ConsoleSink(sys.stderr), summary,
                                                *(extra_sinks or [])],
                          commands=commands)
    interrupts = 0

    def on_stop_signal(signum, _frame):
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                os.write(2, b"second interrupt: exiting now\n")
                os._exit(EXIT_SIGINT)
        if app.run_control.stop_exit_code == 0:
            app.run_control.stop_exit_code = 128 + signum
            # said at once: the batch under way may take a while to finish
            again = " (Ctrl+C again exits at once)" if signum == signal.SIGINT else ""
            os.write(2, f"{signal.Signals(signum).name}: stopping at the next batch boundary "
                        f"with a checkpoint{again}\n".encode())
        commands.stop()

    def on_checkpoint_signal(_signum, _frame):
        commands.checkpoint()

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, on_stop_signal),
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop_signal),
        signal.SIGUSR1: signal.signal(signal.SIGUSR1, on_checkpoint_signal),
    }
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        # A plain SSH session that drops would kill the run outright; stop it cleanly
        # instead (under nohup SIGHUP is ignored, and stays so).
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_stop_signal)
    try:
        code = app.main()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if summary.run_dir and os.environ.get("RANK", "0") == "0":   # a run that started
        previous_one = previous_run(summary.run_dir, app.cli_args.runs_dir)
        sys.stderr.write("".join(line + "\n" for line in summary.lines(previous_one)))
    return code
