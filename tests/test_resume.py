"""Resume from an epoch-end checkpoint, TensorBoard after a resume (purge_step), best.pt, and
what a skipped update leaves behind: a non-finite loss or a non-finite gradient.

Machine-independent by construction: best.pt is driven by validation losses the test sets
(ScriptedValidationLoss); the non-finite faults are injected; resumed runs are compared bit for
bit with a run computed on this machine."""

from __future__ import annotations

import glob
import math
import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.train.checkpoint import list_checkpoints, load_checkpoint
from luna_core.train.metrics import METRICS_LOSS_NDX
from luna_core.train.model import LunaModel
from luna_core.training import LunaTrainingApp
from tests.trainhelpers import run_dirs, run_loop, stop_at

# Trainable parameters only: BatchNorm's running statistics move in every forward pass, even
# in a batch whose update is skipped.
PARAM_NAMES = [name for name, _ in LunaModel().named_parameters()]


def _argv(tiny_data, runs_dir, *extra: str) -> list[str]:
    """The options of conftest's train_argv, for runs made once per module."""
    return ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", str(runs_dir), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", *extra]


def _newest_state(runs_dir) -> dict:
    (run_dir,) = run_dirs(runs_dir)
    return load_checkpoint(list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1])


def _epoch_metrics(recorder, epoch: int) -> dict:
    return {m.phase: (m.total_samples, m.metrics, m.neg_correct, m.pos_correct)
            for m in recorder.of(ev.EpochMetrics) if m.epoch == epoch}


def _momentum(state: dict) -> list[torch.Tensor]:
    opt = state["optimizer"]["state"]
    return [opt[i]["momentum_buffer"] for i in range(len(PARAM_NAMES))]


def _assert_same_weights_and_momentum(a: dict, b: dict, names=None) -> None:
    for name in names or a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for i, (buf_a, buf_b) in enumerate(zip(_momentum(a), _momentum(b), strict=True)):
        assert torch.equal(buf_a, buf_b), f"momentum of {PARAM_NAMES[i]}"


def _tensorboard_scalars(runs_dir) -> dict:
    """{(phase, tag): [(step, value), ...]} as TensorBoard reads the run's writer dirs (it
    applies the restart marker that purge_step writes)."""
    out = {}
    for phase in ("trn", "val"):
        (log_dir,) = glob.glob(os.path.join(str(runs_dir), "luna", f"*-{phase}_cls-dlwpt"))
        acc = EventAccumulator(log_dir)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[(phase, tag)] = [(s.step, s.value) for s in acc.Scalars(tag)]
    return out


@pytest.fixture(scope="module")
def straight(tiny_data, tmp_path_factory):
    """Two epochs straight through, seed 7: the reference for the resumed runs."""
    runs_dir = tmp_path_factory.mktemp("straight")
    code, recorder, _ = run_loop(_argv(tiny_data, runs_dir, "--epochs", "2", "--seed", "7"))
    assert code == 0
    return {"state": _newest_state(runs_dir), "rec": recorder,
            "tb": _tensorboard_scalars(runs_dir)}


@pytest.fixture(scope="module")
def resumed_twice(tiny_data, tmp_path_factory):
    """One run (seed 7) resumed twice in its run directory:

    A  ``--epochs 1``, with a request checkpoint after batch 1 (e001-b000002.pt, step 16);
       ends with e001-end.pt and epoch 1's TensorBoard scalars at step 48.
    B  ``--resume RUN_DIR --epochs 2``: from e001-end.pt through epoch 2 (scalars at 96).
    C  ``--resume RUN_DIR/checkpoints/e001-b000002.pt --epochs 2``: back to step 16, behind the
       scalars that A and B logged at 48 and 96, and through both epochs again.
    """
    runs_dir = tmp_path_factory.mktemp("resumed")
    commands = CommandChannel()

    def checkpoint_after_batch_1(event):
        if isinstance(event, ev.BatchDone) and (event.phase, event.batch_ndx) == ("trn", 1):
            commands.checkpoint()

    code, rec_a, _ = run_loop(_argv(tiny_data, runs_dir, "--epochs", "1", "--seed", "7"),
                              hooks=[checkpoint_after_batch_1], commands=commands)
    assert code == 0
    (run_dir,) = run_dirs(runs_dir)
    mid_epoch = os.path.join(run_dir, "checkpoints", "e001-b000002.pt")
    assert [c.path for c in rec_a.of(ev.CheckpointSaved) if c.reason == "request"] \
        == [mid_epoch]

    code, rec_b, _ = run_loop(_argv(tiny_data, runs_dir, "--resume", run_dir, "--epochs", "2"))
    assert code == 0
    state_b = _newest_state(runs_dir)  # read now: C writes e002-end.pt again
    tensorboard_b = _tensorboard_scalars(runs_dir)

    code, rec_c, _ = run_loop(_argv(tiny_data, runs_dir, "--resume", mid_epoch, "--epochs", "2"))
    assert code == 0
    assert rec_c.of(ev.RunStarted)[0].resumed_from == mid_epoch
    assert run_dirs(runs_dir) == [run_dir]
    return {"runs_dir": runs_dir, "rec_b": rec_b, "state_b": state_b,
            "tensorboard_b": tensorboard_b}


def test_resume_from_epoch_end_continues_with_the_next_epoch_exactly(resumed_twice, straight):
    rec_b, resumed = resumed_twice["rec_b"], resumed_twice["state_b"]
    (started,) = rec_b.of(ev.RunStarted)
    assert started.resumed_from.endswith("e001-end.pt") and started.start_epoch == 2
    assert {m.epoch for m in rec_b.of(ev.EpochMetrics)} == {2}  # epoch 1 is not redone

    reference = straight["state"]
    assert (resumed["epoch"], resumed["epoch_done"]) == (2, True)
    assert resumed["total_samples"] == reference["total_samples"] == 96
    _assert_same_weights_and_momentum(reference, resumed)
    assert _epoch_metrics(rec_b, 2) == _epoch_metrics(straight["rec"], 2)


def test_tensorboard_after_resume_has_each_step_once_with_uninterrupted_values(
        resumed_twice, straight):
    reference = straight["tb"]
    # 9 scalar tags each for trn and val, and for val 20 of LUNA16's score (CPM, its interval,
    # the CPM of chance, 7 sensitivities, AUC and its interval, AP, 4 confusion counts, the
    # central-HU baseline's AUC): the bootstrap intervals too are the same after a resume
    assert len(reference) == 38
    assert ("val", "froc/cpm_low") in reference and ("val", "roc/auc_low") in reference
    assert {tuple(step for step, _ in points) for points in reference.values()} == {(48, 96)}
    # B, from e001-end.pt (step 48), keeps the scalars A logged at that very step
    assert resumed_twice["tensorboard_b"] == reference
    # A and B had logged 48 and 96 after C's checkpoint (step 16): C's writers purge them
    assert _tensorboard_scalars(resumed_twice["runs_dir"]) == reference


class ScriptedValidationLoss(LunaTrainingApp):
    """Validation reports the loss the test sets per epoch, whatever SGD did on this CPU: each
    validation sample's loss is overwritten before the epoch's metrics are computed."""

    VAL_LOSS = {1: 0.5, 2: 0.7, 3: 0.3, 4: 0.3, 5: 0.2999}

    def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
        loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
        if not self.model.training:
            start = batch_ndx * self.cli_args.batch_size
            metrics_g[METRICS_LOSS_NDX, start:start + len(batch_tup[0])] = \
                self.VAL_LOSS[self.epoch]
        return loss


def test_best_checkpoint_is_replaced_only_on_improvement(train_argv):
    # validation loss 0.5, 0.7 (worse), 0.3 (better), 0.3 (a tie is no improvement), 0.2999
    seen = []

    def read_best(event):
        if isinstance(event, ev.CheckpointSaved) and event.reason == "epoch":
            best = load_checkpoint(os.path.join(os.path.dirname(event.path), "best.pt"))
            seen.append((event.epoch, best["epoch"], best["val_loss"]))

    code, rec, _ = run_loop(train_argv("--epochs", "5", "--max-batches", "1"),
                            app_cls=ScriptedValidationLoss,
                            hooks=[read_best])
    assert code == 0
    losses = [m.metrics["loss/all"] for m in rec.of(ev.EpochMetrics) if m.phase == "val"]
    assert losses == pytest.approx([0.5, 0.7, 0.3, 0.3, 0.2999])
    v1, _, v3, _, v5 = losses
    assert seen == [(1, 1, v1), (2, 1, v1), (3, 3, v3), (4, 3, v3), (5, 5, v5)]


class NanLossAt(LunaTrainingApp):
    """A NaN training loss at epoch 1, batch 2."""

    def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
        loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
        if self.model.training and self.epoch == 1 and batch_ndx == 2:
            return loss * float("nan")
        return loss


class _InfGradient(torch.autograd.Function):
    """Zero in the forward pass; an infinite gradient for its input in the backward pass."""

    @staticmethod
    def forward(ctx, param):
        ctx.shape = param.shape
        return param.new_zeros(())

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.new_full(ctx.shape, math.inf)


class InfGradAt(LunaTrainingApp):
    """At epoch 1, batch 2: the loss is unchanged (finite), head_linear.weight's gradient is
    infinite."""

    def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
        loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
        if self.model.training and self.epoch == 1 and batch_ndx == 2:
            return loss + _InfGradient.apply(self.model.head_linear.weight)
        return loss


@pytest.mark.parametrize("app_cls, message", [
    (NanLossAt, "E1 batch 2: non-finite training loss; its update was skipped"),
    (InfGradAt, "E1 batch 2: non-finite gradient"),
], ids=["nan-loss", "inf-gradient"])
def test_skip_leaves_weights_and_momentum_untouched(train_argv, app_cls, message):
    commands = CommandChannel()

    def checkpoint_around_batch_2(event):
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.batch_ndx in (1, 2):
            commands.checkpoint()

    code, rec, console = run_loop(
        train_argv("--epochs", "1", "--max-batches", "4", "--on-nonfinite", "skip"),
        app_cls=app_cls, hooks=[checkpoint_around_batch_2], commands=commands)
    assert code == 0
    assert [(e.epoch, e.batch_ndx, e.action) for e in rec.of(ev.NonFiniteLoss)] \
        == [(1, 2, "skip")]
    assert message in console
    by_name = {os.path.basename(c.path): load_checkpoint(c.path)
               for c in rec.of(ev.CheckpointSaved)}
    assert sorted(by_name) == ["e001-b000002.pt", "e001-b000003.pt", "e001-end.pt"]
    before, after = by_name["e001-b000002.pt"], by_name["e001-b000003.pt"]
    _assert_same_weights_and_momentum(before, after, PARAM_NAMES)
    # training went on: batch 3's update moved every parameter and momentum buffer
    end = by_name["e001-end.pt"]
    for name in PARAM_NAMES:
        assert not torch.equal(after["model"][name], end["model"][name]), name
    for buf_after, buf_end in zip(_momentum(after), _momentum(end), strict=True):
        assert not torch.equal(buf_after, buf_end)


@pytest.fixture(scope="module")
def clean_after_batch_1(tiny_data, tmp_path_factory):
    """The stop checkpoint of a clean run stopped after E1 batch 1 (default seed)."""
    runs_dir = tmp_path_factory.mktemp("clean")
    commands = CommandChannel()
    code, _, _ = run_loop(_argv(tiny_data, runs_dir, "--epochs", "2"),
                          hooks=[stop_at(commands, 1, 1)], commands=commands)
    assert code == 0
    state = _newest_state(runs_dir)
    assert (state["epoch"], state["batch_ndx"]) == (1, 2)
    return state


def test_nonfinite_gradient_stops_with_last_good_weights(train_argv, clean_after_batch_1):
    code, rec, console = run_loop(train_argv("--epochs", "2", "--on-nonfinite", "stop"),
                                  app_cls=InfGradAt)
    bad_batch = [b for b in rec.of(ev.BatchDone) if (b.phase, b.batch_ndx) == ("trn", 2)]
    assert math.isfinite(bad_batch[0].loss)  # the fault is in the gradient only
    assert code == 3
    assert [(e.epoch, e.batch_ndx, e.action) for e in rec.of(ev.NonFiniteLoss)] \
        == [(1, 2, "stop")]
    finished = rec.of(ev.RunFinished)[0]
    assert "non-finite gradient at E1 batch 2" in finished.error
    assert "E1 batch 2: non-finite gradient" in console
    (saved,) = rec.of(ev.CheckpointSaved)
    assert saved.reason == "nonfinite" and saved.path == finished.last_checkpoint
    # batch 2's update was not applied: the weights are those after batch 1
    _assert_same_weights_and_momentum(clean_after_batch_1, load_checkpoint(saved.path),
                                      PARAM_NAMES)
