"""The commands' table (luna_core.run.command_table.COMMANDS): one entry per command, and every
sender and the loop read it: `ctl` (its words, help, acknowledgements), the control socket
(what it accepts), the loop (the handler), and the cockpit (its keys, their help, their gate,
the read-only wording)."""

from __future__ import annotations

import dataclasses

import pytest

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.command_table import (
    COMMANDS,
    Command,
    CommandChannel,
    Setting,
    command_spec,
    commands_said,
)
from luna_core.run.send_command import ctl
from luna_core.train.distributed import DistContext
from luna_core.train.run_flags import RunControl
from luna_core.train.state import LoopState
from luna_tui import cli
from luna_tui.link.local import LocalLink
from luna_tui.model.collector import EventCollector
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.model.steering import COMMAND_ACTION, Steering
from luna_tui.screens.cockpit import RUN_KEYS, CockpitScreen
from luna_tui.screens.help import key_name, key_rows
from tests.cockpit_helpers import FROZEN_READING, on_screen, screen_text
from tests.test_attach_app import attach, toasted, write_fake_run

NAMES = [spec.name for spec in COMMANDS]


def test_one_entry_per_command_and_every_entry_complete():
    assert len(set(NAMES)) == len(NAMES)
    assert NAMES == ["pause", "resume", "checkpoint", "stop", "stop-after-epoch", "set"]
    # the words without values are the Command enum; set is the Setting
    assert [c.value for c in Command] == [s.name for s in COMMANDS if not s.takes_values]
    assert [s.name for s in COMMANDS if s.takes_values] == [Setting.value]
    assert "toggle_pause" not in NAMES and not hasattr(Command, "TOGGLE_PAUSE")
    for spec in COMMANDS:
        assert spec.help and spec.ack.kind and spec.ack.said, spec.name
        assert callable(getattr(RunControl, spec.handler)), spec.name
        assert (spec.paused is None) == (not spec.moot), spec.name
        if spec.keys:
            assert spec.key_help and spec.refused, spec.name
    with pytest.raises(KeyError):
        command_spec("toggle_pause")


def _run_control() -> RunControl:
    return RunControl(ev.EventBus(), CommandChannel(), LoopState(), "auto", interactive=True)


def test_the_loop_acts_on_each_command_through_its_handler():
    control, dist = _run_control(), DistContext()
    assert control.between_batches(dist, [Command.PAUSE]).paused
    assert control.state == ev.PAUSED
    assert not control.between_batches(dist, [Command.RESUME]).paused
    assert control.between_batches(dist, [Command.CHECKPOINT]).checkpoint
    setting = Setting(lr=0.5, source="test")
    assert control.between_batches(dist, [setting]).setting == setting
    after_epoch = control.between_batches(dist, [Command("stop-after-epoch")])
    assert not after_epoch.stop and control.stops_after(1, 2) and not control.stops_after(2, 2)
    assert control.between_batches(dist, [Command.STOP]).stop
    assert control.state == ev.STOPPING


def test_ctl_help_lists_every_command_of_the_table(capsys):
    with pytest.raises(SystemExit):
        cli.main(["ctl", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for spec in COMMANDS:
        assert f"{spec.name}: {' '.join(spec.help.split())}" in out, spec.name
    assert commands_said() in out


def test_ctl_refuses_a_word_of_no_command_with_the_table_in_its_message(tmp_path):
    with pytest.raises(LunaInputError) as info:
        ctl(str(tmp_path), "toggle_pause", str(tmp_path))
    assert str(info.value) == ("unknown command 'toggle_pause': use one of pause, resume, "
                               "checkpoint, stop, stop-after-epoch or set lr=X momentum=Y")
    with pytest.raises(LunaInputError, match="'stop' takes no values"):
        ctl(str(tmp_path), "stop", str(tmp_path), values=["lr=1"])


def test_acknowledgements_and_their_lines_come_from_the_table():
    where = "after E1 trn batch 10/83"
    paused, working = ev.StatusChanged(state=ev.PAUSED), ev.StatusChanged(state=ev.TRAINING)
    saved = ev.CheckpointSaved(path="ck.pt", reason="request", epoch=1, batch_ndx=10,
                               total_samples=320)
    finished = ev.RunFinished(state=ev.STOPPED, exit_code=0)
    changed = ev.OptimizerChanged(lr=0.0005, momentum=0.99, old_lr=0.001, old_momentum=0.99,
                                  epoch=1, batch_ndx=10, total_samples=320)
    after_epoch = ev.StopAfterEpoch(epoch=2)
    acks = {"pause": paused, "resume": working, "checkpoint": saved, "stop": finished,
            "stop-after-epoch": after_epoch, "set": changed}
    for name, event in acks.items():
        ack = command_spec(name).ack
        assert [other for other in acks.values() if ack.by(other)] == [event], name
    assert not command_spec("checkpoint").ack.by(dataclasses.replace(saved, reason="epoch"))
    lines = {name: command_spec(name).ack.line(event, where) for name, event in acks.items()}
    assert lines == {
        "pause": f"paused {where}", "resume": f"resumed {where}",
        "checkpoint": "checkpoint saved at E1 batch 10: ck.pt",
        "stop": "stopped (stopped, exit status 0); last checkpoint none",
        "stop-after-epoch": "stops at the end of E2, once it is validated and checkpointed "
                            f"(asked {where})",
        "set": "lr 0.001 -> 0.0005, momentum 0.99 -> 0.99 at E1 batch 10"}
    assert command_spec("pause").ack.line(paused) == "paused"


# -- the cockpit -----------------------------------------------------------------------------

def test_each_cockpit_key_is_bound_once_with_its_label_and_help_from_the_table():
    expected = [(key.key, spec.name, key.argument, key.label, key.show, key.display,
                 spec.key_help) for spec in COMMANDS for key in spec.keys]
    bound = []
    for binding in RUN_KEYS:
        name, _, argument = binding.action.removeprefix(f"app.{COMMAND_ACTION}(").rstrip(
            ")").partition(", ")
        bound.append((binding.key, name.strip("'"), float(argument) if argument else None,
                      binding.description, binding.show, binding.key_display,
                      binding.tooltip))
    assert bound == expected
    assert len({b.action for b in RUN_KEYS}) == len(RUN_KEYS)        # no read-only variant
    assert all(b.action.startswith(f"app.{COMMAND_ACTION}(") for b in RUN_KEYS)
    assert set(RUN_KEYS) <= set(CockpitScreen.BINDINGS)
    # the help screen's rows: one per help line of the table, its keys as the footer writes
    rows = dict((text, keys) for keys, text in key_rows(RUN_KEYS))
    for spec in COMMANDS:
        for key in spec.keys:
            assert key_name(key.key) in rows[spec.key_help].split(), (spec.name, key.key)


@pytest.mark.parametrize("state", [ev.TRAINING, ev.PAUSED])
def test_the_gate_of_each_key_is_the_table_s(state):
    snap = RunSnapshot(state=state)
    live, read_only = Steering(attached=True), Steering(attached=True)
    read_only.read_only = "the run is on host elsewhere"
    for spec in COMMANDS:
        parameters = (spec.name,)
        expected = spec.paused is None or spec.paused == (state == ev.PAUSED)
        assert live.allowed(COMMAND_ACTION, parameters, snap, run_over=False) is expected
        assert live.allowed(COMMAND_ACTION, parameters, snap, run_over=True) is False
        # read-only: the key acts, to say why (the footer leaves it out); not while quitting
        assert read_only.refuses(spec) is not spec.read_only_ok
        assert read_only.allowed(COMMAND_ACTION, parameters, snap, run_over=True) is True
    read_only.quitting = True
    assert not any(read_only.allowed(COMMAND_ACTION, (s.name,), snap, run_over=True)
                   for s in COMMANDS)


def test_a_request_is_said_with_the_table_s_words_until_the_run_acts():
    steering = Steering(attached=False)
    for spec in COMMANDS:
        steering.request = spec.name if spec.request else None
        assert steering.ui_status(False, None, "t").request == spec.request


def test_a_read_only_link_refuses_a_live_only_command_with_the_table_s_wording(tmp_path):
    write_fake_run(tmp_path / "run")                        # finished: read-only
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    snap = app.link.snapshot()
    why = app.link.read_only_reason(snap)
    assert why == "the run has finished"
    for spec in COMMANDS:
        assert app.link.refusal(spec.name, snap) == f"Cannot {spec.refused}: {why}."
    local = LocalLink(EventCollector(), CommandChannel())
    assert local.refusal("checkpoint", local.snapshot()) is None


async def test_every_key_of_a_read_only_attach_says_the_table_s_refusal(tmp_path):
    write_fake_run(tmp_path / "run", until=lambda e: isinstance(e, ev.BatchDone)
                   and e.batch_ndx == 5, host="elsewhere")
    app = attach(str(tmp_path / "run"), system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        text = await on_screen(pilot, app, "TRAINING")
        why = app.controls.read_only
        for spec in COMMANDS:
            for key in spec.keys:
                assert f"{key.display or key.key} {key.label}" not in text
                app.clear_notifications()
                await pilot.press(key.key)
                await toasted(pilot, app, spec.refusal(why))
        assert "Pause" not in screen_text(app).splitlines()[-1]
        await pilot.press("d")
    assert app.commands.sent == []
