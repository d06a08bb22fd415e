"""The layers and their fences: what starts without torch, the import contracts, one rule in
one place, and the cockpit built on Textual's public API only (a Textual upgrade that
breaks what it relies on fails here, by name)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.app import App
from textual.dom import DOMNode
from textual.message import Message

from luna_core.run import events as ev
from luna_core.run import runs
from luna_core.run.estimate import LIVE_WARMUP_BATCHES, PhaseEstimate
from luna_tui.app import CockpitApp
from luna_tui.link import system_probe
from luna_tui.messages import CheckpointArrived, CommandFailed, RunEnded
from luna_tui.model import collector as collector_module
from luna_tui.model.collector import EventCollector
from luna_tui.model.endings import attach_closing_line, cockpit_closing_line
from tests.cockpit_helpers import fake_time
from tests.fakerun import FakeTrainer

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _write_run(run_dir: Path, *, finished: bool = True) -> None:
    """An event file as a headless run writes it (from the fake trainer)."""
    run_dir.mkdir(parents=True)
    trainer = FakeTrainer(epochs=1, trn_batches=8, val_batches=2, time_fn=fake_time(),
                          run_dir=str(run_dir))
    with open(run_dir / "events.jsonl", "w") as f:
        for event in trainer.events():
            if isinstance(event, ev.RunStarted):
                event = dataclasses.replace(event, pid=os.getpid(), host="elsewhere")
            f.write(json.dumps(ev.event_to_dict(event)) + "\n")
            if not finished and isinstance(event, ev.BatchDone):
                break


# -- what starts without torch --------------------------------------------------------------

def test_luna_tui_runs_imports_no_torch(tmp_path):
    _write_run(tmp_path / "runs" / "luna" / "2025-03-04_12.00.00-dlwpt")
    result = _python(
        "import sys\nfrom luna_tui.cli import main\n"
        f"code = main(['runs', '--runs-dir', {str(tmp_path / 'runs')!r}])\n"
        "print('EXIT', code, 'torch' in sys.modules, 'numpy' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout and "1/1" in result.stdout
    assert result.stdout.strip().endswith("EXIT 0 False False")


def test_luna_tui_attach_opens_and_shows_a_run_without_torch(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, finished=False)
    result = _python(
        "import asyncio, sys\nfrom luna_tui.cli import main\n"
        # the command line: reads the run, builds the app, then wants a terminal (exit 2)
        # (--images off: textual-image's sixel encoder loads numpy when images are on)
        f"code = main(['attach', {str(run_dir)!r}, '--images', 'off'])\n"
        "from luna_tui.attach import build_attach_app\n"
        f"app = build_attach_app({str(run_dir)!r}, poll_interval=0.1)\n"
        "async def show():\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause(0.3)\n"
        "        await pilot.press('d')\n"
        "asyncio.run(show())\n"
        "print('EXIT', code, app.leaving.outcome, 'torch' in sys.modules,\n"
        "      'numpy' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert "needs an interactive terminal" in result.stderr
    assert result.stdout.strip().endswith("EXIT 2 detached False False")


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    if lint is None:
        pytest.skip("import-linter is not installed")
    result = subprocess.run([lint], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = " ".join(result.stdout.split())
    for contract in ("luna_core never imports textual", "luna_core.run", "luna_core.data",
                     "imports no textual", "start without torch"):
        assert contract in report


# -- one rule, one place ----------------------------------------------------------------------

def test_the_cockpit_and_the_log_lines_share_one_eta_rule():
    """With the same warm-up, the cockpit's "phase ends" and the log line's remaining time
    are the same number, batch for batch, once the warm-up is over."""
    count, active, compared = 40, 0.0, 0
    log_eta = PhaseEstimate(count, warmup=LIVE_WARMUP_BATCHES)
    collector = EventCollector()
    collector(ev.PhaseStarted(phase="trn", epoch=1, batch_count=count, sample_count=32 * count))
    for ndx in range(count - 1):
        active += 0.5 if ndx == 0 else 0.1 + 0.001 * ndx
        collector(ev.BatchDone(phase="trn", epoch=1, batch_ndx=ndx, batch_count=count,
                               samples=32, total_samples=32 * (ndx + 1), loss=0.5,
                               data_s=0.01, compute_s=0.01, active_s=active))
        remaining = log_eta.update(ndx + 1, active)
        snap = collector.snapshot()
        if remaining is not None:
            assert snap.phase_remaining_s == remaining
            compared += 1
    assert compared == count - 1 - LIVE_WARMUP_BATCHES     # from the batch after the anchor
    assert collector_module.WARMUP_BATCHES == LIVE_WARMUP_BATCHES


def test_run_state_rules_live_in_luna_core_run():
    assert collector_module.ENDED_STATES is runs.ENDED_STATES
    assert system_probe.this_host is runs.this_host
    assert runs.on_this_host("") and runs.on_this_host(runs.this_host())
    assert not runs.on_this_host("not-" + runs.this_host())
    here = ev.RunStarted(run_dir="r", options={}, epochs=1, start_epoch=1, trn_samples=1,
                         val_samples=1, trn_pos=0, val_pos=0, device="cpu", pid=os.getpid(),
                         host=runs.this_host())
    assert not runs.process_gone(here)
    assert not runs.process_gone(dataclasses.replace(here, host="elsewhere", pid=2**22 + 7))


def test_both_cockpits_close_with_the_same_words_for_an_ended_run():
    collector = EventCollector()
    collector.feed(FakeTrainer(epochs=1, trn_batches=4, val_batches=1,
                               time_fn=fake_time()).events())
    snap = collector.snapshot()
    line = cockpit_closing_line(snap)
    assert line == attach_closing_line(snap, snap.run_dir, 4242)
    assert line == f"run finished; last checkpoint {snap.last_checkpoint.path}"


# -- Textual: public API only ------------------------------------------------------------------

def _textual_classes_of_luna_tui() -> list[type]:
    import luna_tui

    found: set[type] = set()
    for info in pkgutil.walk_packages(luna_tui.__path__, "luna_tui."):
        if info.name == "luna_tui.__main__":
            continue
        for value in vars(importlib.import_module(info.name)).values():
            if (inspect.isclass(value) and issubclass(value, DOMNode)
                    and value.__module__.startswith("luna_tui")):
                found.add(value)
    return sorted(found, key=lambda c: c.__qualname__)


def _ours(cls: type) -> set[str]:
    """Private names luna_tui's classes in ``cls``'s MRO define: in the class body (as
    written, and as the class has them less those Textual sets on every subclass) or as
    ``self._name = ...``."""
    bare = type("Bare", (_textual_base(cls),), {})
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("luna_tui"):
            names |= {n for n in vars(klass) if n.startswith("_") and not n.startswith("__")
                      and n not in vars(bare)}
            source = inspect.getsource(klass)
            names |= set(re.findall(r"\bself\.(_[a-z]\w*)\s*(?::[^=\n]*)?=", source))
            names |= set(re.findall(r"^    (_[a-z]\w*)\s*(?::[^=\n]*)?=", source, re.M))
    return names


def _textual_base(cls: type) -> type:
    return next(b for b in cls.__mro__ if b.__module__.split(".")[0].startswith("textual"))


def test_no_luna_tui_class_overrides_a_private_textual_member():
    """Our widgets, screens and apps keep clear of Textual's private names (a clash would
    silently replace Textual's own, as ``_inherit_bindings = False`` once did nothing)."""
    classes = _textual_classes_of_luna_tui()
    assert CockpitApp in classes and len(classes) >= 10
    for cls in classes:
        base = _textual_base(cls)
        textual = {n for b in cls.__mro__ if b.__module__.split(".")[0].startswith("textual")
                   for n in vars(b) if n.startswith("_")}
        textual |= {n for n in vars(base()) if n.startswith("_")}
        assert not _ours(cls) & textual, cls


def test_one_cockpit_app_over_either_link():
    """The cockpit is one App class, with no mixin and no subclass for attach: the link says
    where the run lives (luna_tui.link), the screen lays out the panes."""
    from luna_tui.link.local import LocalLink
    from luna_tui.link.remote import RemoteLink
    from luna_tui.runs_app import RunsApp
    from luna_tui.screens.cockpit import CockpitScreen

    classes = _textual_classes_of_luna_tui()
    # the cockpit (in process or attached) and the runs screen, a different app
    assert sorted((c for c in classes if issubclass(c, App)), key=lambda c: c.__name__) == [
        CockpitApp, RunsApp]
    assert CockpitApp.__bases__ == (App,)
    assert LocalLink.attached is False and RemoteLink.attached is True
    assert CockpitScreen in classes


def test_luna_tui_writes_no_private_attribute_of_another_object():
    """`x._name = ...` only on self (and cls), never on another object's private state."""
    import luna_tui

    offenders = []
    for path in Path(luna_tui.__file__).parent.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for target in re.findall(r"\b([A-Za-z_][\w.]*)\._[a-z]\w*\s*(?::[^=\n]*)?=(?!=)",
                                     line):
                if target not in ("self", "cls"):
                    offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


async def test_textual_dataclass_messages_and_worker_results_reach_the_app():
    """The cockpit's messages are dataclasses, and its trainer worker returns its result:
    both as Textual documents them."""
    for message in (RunEnded(1, "boom", "tb"), CheckpointArrived("p", "epoch"),
                    CommandFailed("stop", "gone")):
        assert isinstance(message, Message) and dataclasses.is_dataclass(message)
    seen: list[object] = []

    class Probe(App):
        def on_mount(self) -> None:
            self.run_worker(lambda: 42, thread=True, exit_on_error=False)

        def on_worker_state_changed(self, event) -> None:
            if event.worker.is_finished:
                seen.append(event.worker.result)
                self.post_message(RunEnded(event.worker.result, None, None))

        def on_run_ended(self, message: RunEnded) -> None:
            seen.append(message)
            self.exit()

    async with Probe().run_test() as pilot:
        for _ in range(100):
            if len(seen) == 2:
                break
            await pilot.pause(0.05)
    assert seen == [42, RunEnded(42, None, None)]


def test_exception_descriptions_live_in_luna_core_run():
    from luna_core.run import failure

    try:
        raise ValueError("boom")
    except ValueError as exc:
        short, long = failure.describe_exception(exc), failure.exception_at(exc)
    assert re.fullmatch(r"ValueError: boom at .*test_layers\.py:\d+ in "
                        r"test_exception_descriptions_live_in_luna_core_run", short)
    assert re.fullmatch(rf"ValueError: boom \(at {re.escape(__file__)}:\d+\)", long)
