"""How the end of a run is told, in one place: what each end state means, how to resume a
run, and the line printed when a cockpit closes (in-process: ``cockpit_closing_line``;
attached: ``attach_closing_line``). No Textual here."""

from __future__ import annotations

import shlex

from luna_core.run import events as ev
from luna_core.run.runs import CRASHED
from luna_tui.model.snapshot import RunSnapshot

ENDED_WORDS = {
    ev.FINISHED: "the run has finished",
    ev.STOPPED: "the run was stopped",
    ev.FAILED: "the run failed",
    CRASHED: "the run ended unexpectedly",
}


def resume_command(run_dir: str) -> str:
    return f"luna-tui --headless --resume {shlex.quote(run_dir)}"


def analysis_goes_on(run_dir: str) -> str:
    """How a killed analysis (`luna-tui analyze`) goes on: its series done are kept."""
    return (f"the same luna-tui analyze command with --out {shlex.quote(run_dir)} goes on "
            "(the series done are kept)")


def ended_line(snap: RunSnapshot, run_dir: str | None = None) -> str | None:
    """'run finished; last checkpoint X', or for a crashed run how to resume it (from
    ``run_dir``, default the run's own word for it); None while the run has not ended."""
    last = snap.last_checkpoint_path
    if snap.state == CRASHED and snap.task == "analysis":
        return ("analysis ended unexpectedly; "
                + analysis_goes_on(snap.run_dir if run_dir is None else run_dir))
    if snap.state == CRASHED:
        if last:
            return (f"run ended unexpectedly; last checkpoint {last}; resume with: "
                    f"{resume_command(snap.run_dir if run_dir is None else run_dir)}")
        return "run ended unexpectedly, before its first checkpoint"
    if snap.ended:
        return f"run {snap.state}" + (f"; last checkpoint {last}" if last else "")
    return None


def cockpit_closing_line(snap: RunSnapshot, failure: str | None = None) -> str | None:
    """After the in-process cockpit: what failed, or how the run ended (None: say nothing)."""
    if failure or snap.state == ev.FAILED:
        return f"training failed: {failure or snap.state_detail}"
    return ended_line(snap)


def attach_closing_line(snap: RunSnapshot, run_dir: str, pid: int | str) -> str:
    """After an attached cockpit: how the run ended, or that it goes on without us."""
    line = ended_line(snap, run_dir)
    if line is not None:
        return line
    return (f"detached; the run goes on (pid {pid}). Come back with: "
            f"luna-tui attach {shlex.quote(run_dir)}")
