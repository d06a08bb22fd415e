"""Steering a live run: a new learning rate / momentum at a batch boundary, as an event, a
TensorBoard scalar and in checkpoints; a resumed run ends bit-identical to one that was not
interrupted; bad values are refused.

Machine-independent by construction: the change is asserted as sent; the resume is compared
bit for bit with a run computed on this machine."""

from __future__ import annotations

import glob
import math
import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel, Setting
from luna_core.run.control_socket import ControlClient
from luna_core.train.checkpoint import load_checkpoint
from luna_tui.cli import main as cli_main
from tests.trainhelpers import (
    read_run_events,
    run_dirs,
    run_loop,
    start_headless,
    wait_for_events,
)


def _steer_at(commands, epoch, batch, stop_after=None):
    def hook(event):
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.epoch == epoch:
            if event.batch_ndx == batch:
                commands.set(lr=0.01, momentum=0.9, source="test")
            if stop_after is not None and event.batch_ndx == stop_after:
                commands.stop()
    return hook


def test_a_change_is_an_event_a_scalar_and_checkpointed_and_a_resume_is_exact(train_argv,
                                                                             tmp_path):
    argv = ["--epochs", "2", "--seed", "5"]
    commands = CommandChannel()
    code, straight, _ = run_loop(train_argv(*argv, runs_dir=tmp_path / "a"),
                                 hooks=[_steer_at(commands, 1, 1)], commands=commands)
    assert code == 0
    (changed,) = straight.of(ev.OptimizerChanged)
    assert (changed.old_lr, changed.lr, changed.old_momentum, changed.momentum) == \
        (0.001, 0.01, 0.99, 0.9)
    assert (changed.epoch, changed.batch_ndx, changed.source) == (1, 2, "test")
    (run_a,) = run_dirs(tmp_path / "a")
    end_a = load_checkpoint(os.path.join(run_a, "checkpoints", "e002-end.pt"))
    assert [g["lr"] for g in end_a["optimizer"]["param_groups"]] == [0.01]
    assert [g["momentum"] for g in end_a["optimizer"]["param_groups"]] == [0.9]
    (log_dir,) = glob.glob(str(tmp_path / "a" / "luna" / "*-trn_cls-dlwpt"))
    acc = EventAccumulator(log_dir)
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("optim/lr")] == [
        (changed.total_samples, pytest.approx(0.01))]

    # the same change, stopped at E1 batch 4, resumed: the same weights and momentum
    commands = CommandChannel()
    code, _first, _ = run_loop(train_argv(*argv, runs_dir=tmp_path / "b"),
                               hooks=[_steer_at(commands, 1, 1, stop_after=3)],
                               commands=commands)
    (run_b,) = run_dirs(tmp_path / "b")
    code, second, _ = run_loop(train_argv("--epochs", "2", "--resume", run_b,
                                          runs_dir=tmp_path / "b"))
    assert code == 0 and second.of(ev.OptimizerChanged) == []
    end_b = load_checkpoint(os.path.join(run_b, "checkpoints", "e002-end.pt"))
    for name in end_a["model"]:
        assert torch.equal(end_a["model"][name], end_b["model"][name]), name
    for i, st in end_a["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"],
                           end_b["optimizer"]["state"][i]["momentum_buffer"])
    assert end_b["optimizer"]["param_groups"][0]["lr"] == 0.01


@pytest.mark.parametrize("lr, momentum", [(0.0, None), (-1.0, None), (math.nan, None),
                                          (math.inf, None), (None, 1.0), (None, None)])
def test_values_that_are_not_finite_or_positive_are_refused(lr, momentum):
    with pytest.raises(ValueError):
        Setting(lr, momentum).check()
    with pytest.raises(ValueError):
        CommandChannel().set(lr=lr, momentum=momentum)


def test_ctl_set_changes_a_real_run_and_refuses_bad_values(train_argv, tmp_path, capsys):
    proc = start_headless(train_argv, tmp_path)
    records = wait_for_events(tmp_path, lambda r: any(
        x["kind"] == "batch_done" for x in r), proc)
    run_dir = records[0]["run_dir"]
    code = cli_main(["ctl", run_dir, "set", "lr=0.0005", "--wait", "60"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("lr 0.001 -> 0.0005, momentum 0.99 -> 0.99 at E"), out
    said = [r for r in read_run_events(tmp_path) if r["kind"] == "optimizer_changed"]
    assert [(r["lr"], r["source"]) for r in said] == [(0.0005, "control socket")]

    for bad in (["lr=-1"], ["lr=nan"], ["lr=abc"], ["speed=2"], []):
        code = cli_main(["ctl", run_dir, "set", *bad])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, (bad, err)
    # the run refuses a bad value that comes straight to its socket, too
    client = ControlClient(records[0]["control_socket"])
    try:
        reply = client.request("set", lr=float("inf"))
    finally:
        client.close()
    assert reply["ok"] is False and "finite and positive" in reply["error"]
    assert cli_main(["ctl", run_dir, "stop", "--wait", "60"]) == 0
    assert proc.wait(timeout=60) == 0


def test_steering_adam_sets_its_beta1_as_the_momentum():
    import torch

    from luna_core.train.step import apply_setting, make_optimizer

    optimizer = make_optimizer(torch.nn.Linear(2, 1), lr=0.001, momentum=0.9, kind="adam")
    assert apply_setting(optimizer, 0.01, 0.8) == (0.001, 0.9, 0.01, 0.8)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["betas"] == (0.8, 0.999)
    assert apply_setting(optimizer, None, None) == (0.01, 0.8, 0.01, 0.8)
