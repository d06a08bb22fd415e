"""`--notify-cmd CMD`: run CMD through the shell when the run needs its user: it finished,
stopped or failed, hit a non-finite loss, NODULES MISSED held for the last 3 validations, or
(torchrun) one rank held the job back for a minute.

CMD gets ``LUNA_EVENT`` (finished / stopped / failed / nonfinite / nodules_missed /
straggler),
``LUNA_RUN_DIR`` and ``LUNA_MESSAGE`` in its environment, so ``notify-send``, ``mail`` or a
webhook with ``curl`` all work. The sink only starts a thread: the loop never waits for CMD. A
command that fails is logged; one still running after ``timeout`` seconds is killed (its whole
process group) and logged. At the end of the run the sink waits for the commands still
running, each up to its timeout."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

from luna_core.run import events as ev
from luna_core.run.fold import event_method
from luna_core.run.metric_catalog import CORRECT, CORRECT_POS
from luna_core.run.straggler import ALERT_AFTER_S

log = logging.getLogger(__name__)

#: NODULES MISSED (the cockpit's alarm too): at most POS_ALARM_MAX % of the nodules right
#: while at least ALL_ALARM_MIN % of all samples are.
POS_ALARM_MAX, ALL_ALARM_MIN = 10.0, 90.0
MISSED_EPOCHS = 3
#: The alarm's name and the book's remedy for it, wherever it is said (the cockpit, the
#: notify command).
MISSED = "NODULES MISSED"
MISSED_REMEDY = "--balanced (as many nodules as others in training) and --augmented"


def missed_found(epoch: int, pos_correct: int, pos_count: int) -> str:
    """'E6: 0 of 10 nodules found'."""
    return f"E{epoch}: {pos_correct} of {pos_count} nodules found"


def missed(pos_percent: float | None, all_percent: float | None, pos_count: int) -> bool:
    """The NODULES MISSED rule on one phase's numbers."""
    return bool(pos_count) and pos_percent is not None and all_percent is not None and \
        pos_percent <= POS_ALARM_MAX and all_percent >= ALL_ALARM_MIN


def nodules_missed(m: ev.EpochMetrics) -> bool:
    return missed(m.metrics.get(CORRECT_POS.key), m.metrics.get(CORRECT.key), m.pos_count)


class NotifySink:
    """A sink that runs ``command`` for the events a user wants to hear about."""

    def __init__(self, command: str, timeout: float = 30.0) -> None:
        self.command = command
        self.timeout = timeout
        self.run_dir = ""
        self._missed: list[bool] = []
        self._missed_said = False
        self._threads: list[threading.Thread] = []

    @event_method
    def __call__(self, event: ev.Event) -> None:
        """Nothing for an event the user need not hear about."""

    @__call__.register
    def _started(self, event: ev.RunStarted) -> None:
        self.run_dir = event.run_dir
        # NODULES MISSED is the classifier's alarm (its remedy, --balanced, is its option)
        self.watch_missed = (event.options or {}).get("task", "nodule") in (None, "nodule")

    @__call__.register
    def _finished(self, event: ev.RunFinished) -> None:
        what = event.error or f"exit status {event.exit_code}"
        self.notify(event.state, f"run {event.state}: {what}")

    @__call__.register
    def _log(self, event: ev.LogRecord) -> None:
        if event.level == "ERROR" and event.message.startswith(ev.SIDE_OUTPUT_FAILED):
            self.notify("side_output_failed", event.message)

    @__call__.register
    def _nonfinite(self, event: ev.NonFiniteLoss) -> None:
        self.notify("nonfinite", f"non-finite loss at E{event.epoch} {event.phase} batch "
                                 f"{event.batch_ndx}: {event.action}")

    @__call__.register
    def _ranks(self, event: ev.RankTimings) -> None:
        s = event.straggler
        if s is None:
            self._straggler_said = None
        elif (float(s.get("named_for_s") or 0.0) >= ALERT_AFTER_S
              and getattr(self, "_straggler_said", None) != s["rank"]):
            self._straggler_said = s["rank"]
            self.notify("straggler", f"{s['reason']} for {float(s['named_for_s']):.0f} s: "
                                     "the job runs at its pace")

    @__call__.register
    def _metrics(self, event: ev.EpochMetrics) -> None:
        if event.phase != "val" or not getattr(self, "watch_missed", True):
            return
        self._missed.append(nodules_missed(event))
        recent = self._missed[-MISSED_EPOCHS:]
        if len(recent) == MISSED_EPOCHS and all(recent) and not self._missed_said:
            self._missed_said = True
            found = missed_found(event.epoch, event.pos_correct, event.pos_count)
            self.notify("nodules_missed", f"{MISSED} for {MISSED_EPOCHS} validations "
                                          f"({found}); try {MISSED_REMEDY}")
        elif not recent[-1]:
            self._missed_said = False

    def notify(self, what: str, message: str) -> None:
        env = {**os.environ, "LUNA_EVENT": what, "LUNA_RUN_DIR": self.run_dir,
               "LUNA_MESSAGE": message}
        thread = threading.Thread(target=self._run, args=(env, what), daemon=True,
                                  name=f"luna-notify-{what}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, env: dict, what: str) -> None:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(self.command, shell=True, env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            log.warning("--notify-cmd could not start for %s: %s", what, exc)
            return
        try:
            _out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            log.warning("--notify-cmd for %s still ran after %.0f s: killed", what,
                        self.timeout)
            return
        if proc.returncode != 0:
            tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:]
            log.warning("--notify-cmd for %s exited with status %d after %.1f s%s", what,
                        proc.returncode, time.monotonic() - t0,
                        f": {tail[0]}" if tail else "")

    def close(self) -> None:
        """Wait for the commands still running (each is killed at its timeout)."""
        for thread in self._threads:
            thread.join(self.timeout + 5)
