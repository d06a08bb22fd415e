"""--lr-warmup: the learning rate rises in a straight line to --lr over the first SAMPLES
training samples; steering changes the lr it rises to; a resumed run goes on with the lr it
stopped at; the log says when the warm-up starts and ends.

Machine-independent by construction: the test reads the lr each step is taken with, not
where the weights go."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from luna_core.run.command_table import CommandChannel
from luna_core.train.checkpoint import load_checkpoint
from luna_core.train.step import PEAK_LR, apply_setting, make_optimizer, warm_up
from luna_core.training import LunaTrainingApp
from tests.trainhelpers import run_dirs, run_loop, stop_at


def test_warm_up_rises_in_a_straight_line_to_the_peak():
    model = torch.nn.Linear(2, 1)
    opt = make_optimizer(model, 0.001, 0.9, "adam")
    assert [warm_up(opt, s, 100) for s in (8, 50, 99, 100, 160)] == \
        pytest.approx([0.00008, 0.0005, 0.00099, 0.001, 0.001])
    assert warm_up(opt, 8, 0) == 0.001                      # no warm-up: the peak
    # steering mid-warm-up: the lr it rises to changes, the share reached stays
    warm_up(opt, 25, 100)
    assert apply_setting(opt, 0.002, None)[::2] == (0.001, 0.002)   # (old lr, lr): peaks
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0005)
    assert warm_up(opt, 50, 100) == pytest.approx(0.001)
    # an optimizer from before the warm-up (no peak in its group) keeps its lr
    del opt.param_groups[0][PEAK_LR]
    opt.param_groups[0]["lr"] = 0.003
    assert warm_up(opt, 10, 100) == pytest.approx(0.0003)


class LrAtEachStep(LunaTrainingApp):
    """Records (samples trained before the step, the lr the step is taken with)."""

    steps: list[tuple[int, float]] = []

    def _guarded_step(self, finite_g):
        LrAtEachStep.steps.append((self.loop.total_samples, self.optimizer.param_groups[0]["lr"]))
        return super()._guarded_step(finite_g)


def _argv(train_argv, *extra, runs_dir=None):
    return train_argv("--epochs", "2", "--epoch-samples", "48", "--balanced",
                      "--optimizer", "adam", "--momentum", "0.9", "--lr", "0.004",
                      "--lr-warmup", "40", "--froc-bootstrap", "0", "--examples", "0", *extra,
                      runs_dir=runs_dir)


def test_each_step_takes_the_warmed_lr_and_a_resume_goes_on_with_it(train_argv, tmp_path):
    LrAtEachStep.steps = []
    code, _rec, console = run_loop(_argv(train_argv), app_cls=LrAtEachStep)
    assert code == 0, console
    straight = LrAtEachStep.steps
    # batches of 8: 8/40, 16/40, ... of 0.004, then 0.004 from the 5th step on
    assert [s for s, _ in straight] == list(range(0, 96, 8))
    assert [lr for _, lr in straight] == pytest.approx(
        [0.004 * min(1.0, (s + 8) / 40) for s in range(0, 96, 8)])
    assert "lr warm-up: lr 0.0008 at E1 batch 1, rising to 0.004 at sample 40" in console
    assert "lr warm-up done: lr 0.004 from E1 batch 5 (40 samples trained)" in console

    # stopped after its 2nd step (inside the warm-up) and resumed: the same lrs on
    LrAtEachStep.steps = []
    commands = CommandChannel()
    runs = tmp_path / "stopped"
    code, _, _ = run_loop(_argv(train_argv, runs_dir=runs), app_cls=LrAtEachStep,
                          hooks=[stop_at(commands, 1, 1)], commands=commands)
    assert code == 0 and len(LrAtEachStep.steps) == 2
    (run_dir,) = run_dirs(runs)
    stop = [p for p in (Path(run_dir) / "checkpoints").iterdir() if p.name == "e001-b000002.pt"]
    assert load_checkpoint(str(stop[0]))["optimizer"]["param_groups"][0][PEAK_LR] == 0.004
    code, _, console = run_loop(_argv(train_argv, "--resume", str(run_dir), runs_dir=runs),
                                app_cls=LrAtEachStep)
    assert code == 0, console
    assert LrAtEachStep.steps == pytest.approx(straight)
    assert "lr warm-up: lr 0.0024 at E1 batch 3, rising to 0.004 at sample 40" in console


def test_a_resume_with_a_shorter_warm_up_goes_on_at_the_full_lr(train_argv, tmp_path):
    # stopped after 16 of 40 warm-up samples (lr 0.4 of its peak), resumed with none
    LrAtEachStep.steps = []
    commands = CommandChannel()
    runs = tmp_path / "stopped"
    code, _, _ = run_loop(_argv(train_argv, runs_dir=runs), app_cls=LrAtEachStep,
                          hooks=[stop_at(commands, 1, 1)], commands=commands)
    assert code == 0
    (run_dir,) = run_dirs(runs)
    LrAtEachStep.steps = []
    code, _, console = run_loop(_argv(train_argv, "--resume", str(run_dir), "--lr-warmup", "0",
                                      runs_dir=runs), app_cls=LrAtEachStep)
    assert code == 0, console
    lrs = [lr for _, lr in LrAtEachStep.steps]
    assert lrs and lrs == pytest.approx([0.004] * len(lrs))


def test_a_negative_warm_up_is_refused_before_anything_is_written(train_argv, tmp_path,
                                                                  capsys):
    from luna_tui.cli import main as cli_main

    with pytest.raises(SystemExit) as stopped:
        cli_main(["--headless", *train_argv("--lr-warmup", "-1")])
    assert stopped.value.code == 2
    assert "--lr-warmup must be at least 0, not -1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
