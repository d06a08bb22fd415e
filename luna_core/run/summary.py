"""What a run amounts to once it has ended, in a few lines: how long it took and where the time
went, its best epochs, its last and best validation, the checkpoint to use, and how to compare
it with the run before it. Built from events alone (the loop's, or a run's event file), so the
headless run, `attach`, the cockpit and `luna-tui runs RUN` say the same. No torch here.

The event file keeps only a few batch events a second: the time of each phase comes from its
last batch (always kept; its ``active_s`` leaves paused time out), and the share of it spent
waiting for data from the batches that were kept.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from luna_core.run import events as ev
from luna_core.run.compare import cpm_of
from luna_core.run.estimate import format_duration
from luna_core.run.fold import RunState, event_method
from luna_core.run.metric_catalog import (
    AUC,
    CPM,
    F1,
    LOSS,
    best_point,
    metric,
)
from luna_core.run.task_table import task_view
from luna_core.run.verdict import verdict


@dataclass
class _Phase:
    active_s: float = 0.0      # the phase's time, pauses left out
    data_s: float = 0.0        # of the batches seen, waiting for data
    busy_s: float = 0.0        # of the batches seen, data + compute


@dataclass
class RunSummary:
    """Folds a run's events as they come (``fold``; a sink) into what ``lines`` says: its
    ``run`` (luna_core.run.fold) holds the state every reader shares (epochs, validations);
    ``take`` folds the summary's own part of an event (where the time went, how the run
    ended). A reader that folds ``run`` itself passes it and calls ``take`` only."""

    run_dir: str = ""
    run: RunState = field(default_factory=RunState)
    state: str = ""
    wall_s: float = 0.0
    paused_s: float = 0.0
    phases: dict[str, _Phase] = field(default_factory=lambda: {"trn": _Phase(),
                                                                  "val": _Phase()})
    last_checkpoint: str | None = None
    error: str | None = None
    _started_at: float | None = None
    _paused_at: float | None = None
    _last_t: float = 0.0
    _last_batch: dict[str, ev.BatchDone] = field(default_factory=dict)
    _ranks: ev.RankTimings | None = None        # torchrun: the latest window of timings
    _straggler: dict | None = None               # the last straggler named, if any

    def __call__(self, e: ev.Event) -> None:
        self.fold(e)

    def fold(self, e: ev.Event) -> None:
        self.run(e)
        self.take(e)
        self._last_t = max(self._last_t, e.t)

    @property
    def epochs(self) -> int:
        return self.run.current.epochs if self.run.current is not None else 0

    @property
    def epochs_done(self) -> int:
        return self.run.epochs_done

    @property
    def val_rows(self) -> dict[int, dict[str, float]]:
        """epoch -> its validation's metrics (a resumed epoch's newest), a copy."""
        return {epoch: dict(m.metrics) for epoch, m in self.run.validations.items()}

    @event_method
    def take(self, e: ev.Event) -> None:
        """The summary's own part of ``e`` (nothing for most events)."""

    @take.register
    def _started(self, e: ev.RunStarted) -> None:
        self._started_at = e.t
        self.run_dir = self.run_dir or e.run_dir

    @take.register
    def _finished(self, e: ev.RunFinished) -> None:
        if self._started_at is not None:
            self.wall_s += e.t - self._started_at
            self._started_at = None
        if self._paused_at is not None:
            self.paused_s += e.t - self._paused_at
            self._paused_at = None
        self.state, self.error = e.state, e.error
        self.last_checkpoint = self._here(e.last_checkpoint) or self.last_checkpoint

    @take.register
    def _status(self, e: ev.StatusChanged) -> None:
        if e.state == ev.PAUSED and self._paused_at is None:
            self._paused_at = e.t
        elif e.state != ev.PAUSED and self._paused_at is not None:
            self.paused_s += e.t - self._paused_at
            self._paused_at = None

    @take.register
    def _phase_started(self, e: ev.PhaseStarted) -> None:
        self._last_batch.pop(e.phase, None)

    @take.register
    def _batch(self, e: ev.BatchDone) -> None:
        phase = self.phases.get(e.phase)
        if phase is None:
            return
        before = self._last_batch.get(e.phase)
        phase.active_s += e.active_s - (before.active_s if before else 0.0)
        phase.data_s += e.data_s
        phase.busy_s += e.data_s + e.compute_s
        self._last_batch[e.phase] = e

    @take.register
    def _rank_timings(self, e: ev.RankTimings) -> None:
        self._ranks = e
        if e.straggler is not None:
            self._straggler = e.straggler

    def ranks_line(self) -> str | None:
        """'  ranks: 2; a straggler named 12 % of the training time (last: rank 1, data
        wait)', None for a run of one process."""
        if self._ranks is None:
            return None
        ranks = len(self._ranks.ranks)
        trn = self.phases["trn"].active_s
        if self._straggler is None:
            return f"  ranks: {ranks}; no straggler named"
        share = 100.0 * self._ranks.named_s / trn if trn > 0 else 0.0
        return (f"  ranks: {ranks}; a straggler named {min(share, 100.0):.0f} % of the "
                f"training time (last: rank {self._straggler['rank']}, "
                f"{self._straggler['part']})")

    @take.register
    def _checkpoint(self, e: ev.CheckpointSaved) -> None:
        self.last_checkpoint = self._here(e.path)

    def _here(self, path: str | None) -> str | None:
        """A recorded path under the run folder the summary reads (a copied run's own)."""
        from luna_core.run.runs import rebase

        recorded = self.run.current.run_dir if self.run.current is not None else None
        return rebase(path, recorded, self.run_dir)

    def best(self, key: str) -> tuple[int, float] | None:
        """(epoch, value) of the best validation of ``key`` (the catalog's better; the
        first epoch on a tie)."""
        rows = self.val_rows
        return best_point(((epoch, rows[epoch].get(key)) for epoch in sorted(rows)),
                          metric(key).higher)

    def data_wait_s(self) -> float:
        total = 0.0
        for p in self.phases.values():
            if p.busy_s > 0:
                total += p.active_s * p.data_s / p.busy_s
        return total

    def best_checkpoint(self) -> str | None:
        if not self.last_checkpoint:
            return None
        best = os.path.join(os.path.dirname(self.last_checkpoint), "best.pt")
        return best if os.path.exists(best) else None

    def lines(self, previous_run: str | None = None, live: bool = False) -> list[str]:
        """The summary, a line each; ``live``: the run has not ended and its process lives
        (what it has done so far, and how to watch it: not how to resume it)."""
        trn, val = self.phases["trn"], self.phases["val"]
        d = format_duration
        wall = self.wall_s
        if not self.state and self._started_at is not None:
            wall += self._last_t - self._started_at        # as of its latest event
        view = task_view(self.run.current.options if self.run.current else None)
        if view.name == "analysis":
            return self._analysis_lines(wall, live)
        headline = ("run still running" if live and not self.state
                    else f"run {self.state or 'not ended'}")
        out = [f"{headline} after {d(wall)}: training "
               f"{d(trn.active_s)}, validation {d(val.active_s)}, waiting for data "
               f"{d(self.data_wait_s())}, paused {d(self.paused_s)}"
               + (f" ({self.epochs_done} of {self.epochs} epochs)" if self.epochs else "")]
        if self.error:
            out.append(f"  why: {self.error}")
        ranks = self.ranks_line()
        if ranks is not None:
            out.append(ranks)
        loss, f1 = self.best(LOSS.key), self.best(F1.key)
        if loss is None:
            out.append("  no validation finished: no best epoch")
        else:
            rows = self.val_rows
            f1_text = (f"{F1.name} {F1.number(f1[1])} at E{f1[0]}" if f1
                       else f"{F1.name} -")
            cpm = self.best(CPM.key)
            cpm_text = ""
            if cpm is not None:
                cpm_text = f"{CPM.name} {cpm_of(rows[cpm[0]])} at E{cpm[0]}; "
            picked = self.best(view.best.key)
            if view.best is not LOSS and picked is not None:   # what picked best.pt first
                cpm_text = (f"{view.best.name} {view.best.number(picked[1])} at "
                            f"E{picked[0]} (picks best.pt); " + cpm_text)
            out.append(f"  best epoch: {cpm_text}validation {LOSS.name} "
                       f"{LOSS.number(loss[1])} at E{loss[0]}; {f1_text}")
            last_epoch = max(rows)
            parts = []
            for m in view.last_validation:
                last = rows[last_epoch].get(m.key)
                if m.better is None:          # a baseline beside the model's: its value
                    if last is not None:
                        parts.append(f"{m.name} {m.number(last)}")
                    continue
                best = self.best(m.key)
                if last is not None and best is not None:
                    parts.append(f"{m.name} {m.number(last)} (best "
                                 f"{m.number(best[1])} at E{best[0]})")
            out.append(f"  last validation (E{last_epoch}): " + ", ".join(parts))
            if rows[last_epoch].get(AUC.key) is not None:
                cpms = [(e, rows[e].get(CPM.key)) for e in sorted(rows)]
                out.append(f"  verdict: {verdict(rows[last_epoch], cpms)}")
        best_ckpt = self.best_checkpoint()
        if best_ckpt:
            out.append(f"  best weights: {best_ckpt}")
        if live and not self.state:
            out.append(f"  watch it: luna-tui attach {shlex.quote(self.run_dir)}")
        elif self.last_checkpoint:
            more = " --epochs N" if self.state == ev.FINISHED else ""
            out.append(f"  go on with: luna-tui --headless --resume "
                       f"{shlex.quote(self.run_dir)}{more}")
        baseline = self.baseline
        if baseline:                     # the run it was told to beat, else the one before
            out.append(compare_line(baseline, self.run_dir, "its --baseline"))
        elif previous_run:
            out.append(compare_line(previous_run, self.run_dir))
        return out

    def _analysis_lines(self, wall: float, live: bool) -> list[str]:
        """An analysis (`luna-tui analyze`): its series, its detection scores, its files."""
        current = self.run.current
        series = current.val_samples if current is not None else 0
        done = self._last_batch.get("val")
        headline = ("analysis still running" if live and not self.state
                    else f"analysis {self.state or 'not ended'}")
        out = [f"{headline} after {format_duration(wall)}: "
               f"{done.batch_ndx + 1 if done else 0} of {series} series"]
        if self.error:
            out.append(f"  why: {self.error}")
        rows = self.val_rows
        if rows:
            m = rows[max(rows)]
            parts = []
            for metric_ in task_view(current.options).last_validation:
                value = m.get(metric_.key)
                if value is None:
                    continue
                text = metric_.text(value)
                if metric_.interval and all(m.get(k) is not None for k in metric_.interval):
                    low, high = (m[k] for k in metric_.interval)
                    text += f" [{low:.2f}–{high:.2f}]"
                parts.append(f"{metric_.name} {text}")
            out.append("  " + ", ".join(parts))
            out.append(f"  files: {os.path.join(self.run_dir, 'detections.csv')} (the "
                       f"challenge's submission format), summary.json")
        elif live and not self.state:
            out.append(f"  watch it: luna-tui attach {shlex.quote(self.run_dir)}")
        else:
            out.append("  go on with: the same luna-tui analyze command (with --out "
                       f"{shlex.quote(self.run_dir)}): series done are kept")
        return out

    @property
    def baseline(self) -> str | None:
        """The run's --baseline when it named a run folder other than this one ('latest'
        would mean another run by the time the line is read)."""
        current = self.run.current
        value = current.options.get("baseline") if current is not None else None
        if not isinstance(value, str) or not os.path.isdir(value):
            return None
        return None if os.path.abspath(value) == os.path.abspath(self.run_dir) else value


def compare_line(other: str, run_dir: str, what: str = "the run before") -> str:
    """The summary's last line: how to compare a run with ``other``."""
    return (f"  compare with {what}: luna-tui compare {shlex.quote(other)} "
            f"{shlex.quote(run_dir)}")


def summarise(run_dir: str, events: list[ev.Event]) -> RunSummary:
    """The summary of the run whose events (all of them, in order) are ``events``."""
    summary = RunSummary(run_dir)
    for e in events:
        summary.fold(e)
    return summary


def previous_run(run_dir: str, runs_dir: str) -> str | None:
    """The run of the same task started before ``run_dir`` under ``runs_dir`` (for the
    compare command: runs of two tasks measure different things)."""
    from luna_core.run.runs import list_runs

    runs = list_runs(runs_dir)
    here = [i for i, r in enumerate(runs)
            if os.path.abspath(r.run_dir) == os.path.abspath(run_dir)]
    if not here:
        return None
    task = runs[here[0]].task
    before = [r.run_dir for r in runs[:here[0]] if r.task == task]
    return before[-1] if before else None
