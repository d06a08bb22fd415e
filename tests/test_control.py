"""Commands at batch boundaries (pause, resume, checkpoint, stop), exact resume, the
non-finite loss guard, and resume refusals.

Machine-independent by construction: an exact resume compares two runs computed on this
machine; the non-finite losses are injected; the clock is moved by the test."""

from __future__ import annotations

import os
import time

import pytest
import torch

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.train.checkpoint import list_checkpoints, load_checkpoint
from luna_core.training import LunaTrainingApp
from tests.trainhelpers import run_dirs, run_loop, stop_at


class SkewedTime:
    """``time`` for luna_core.training whose monotonic clock a test can move on: paused time
    is made long without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def __getattr__(self, name):
        return getattr(time, name)


def test_pause_stops_batches_and_resume_continues(train_argv, monkeypatch):
    from luna_core import training

    clock = SkewedTime()
    monkeypatch.setattr(training, "time", clock)

    class LongWaits(CommandChannel):
        def wait(self, timeout):      # only called while paused: each "takes" 100 s
            clock.offset += 100.0
            return super().wait(timeout)

    commands = LongWaits()
    seen = {"batches": 0}

    def hook(event):  # in the training thread, at each event
        if isinstance(event, ev.BatchDone):
            seen["batches"] += 1
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.batch_ndx == 1:
            commands.pause()
        elif isinstance(event, ev.StatusChanged) and event.state == ev.PAUSED:
            commands.checkpoint()          # taken while paused, then resumed
        elif isinstance(event, ev.CheckpointSaved) and event.reason == "request":
            seen["checkpoint"] = (event.epoch, event.batch_ndx)
            seen["batches_at_checkpoint"] = seen["batches"]
            commands.resume()

    code, rec, _ = run_loop(train_argv("--epochs", "1"), hooks=[hook], commands=commands)
    assert code == 0
    # no batch ran while paused: the checkpoint is at the pause position
    assert (seen["checkpoint"], seen["batches_at_checkpoint"]) == ((1, 2), 2)
    states = [e.state for e in rec.of(ev.StatusChanged)]
    assert ev.PAUSED in states and states[-1] == ev.FINISHED
    assert states[states.index(ev.PAUSED) + 1] == ev.TRAINING
    trn = [e for e in rec.of(ev.BatchDone) if e.phase == "trn"]
    assert len(trn) == 6
    # Paused time does not count as active time (the ETA and samples/s ignore it).
    assert trn[2].active_s - trn[1].active_s < 50.0


def test_checkpoint_now_writes_a_loadable_file_and_training_goes_on(train_argv, tmp_path):
    commands = CommandChannel()

    def hook(event):
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.batch_ndx == 2:
            commands.checkpoint()

    code, rec, _ = run_loop(train_argv("--epochs", "1"), hooks=[hook], commands=commands)
    assert code == 0
    request = [c for c in rec.of(ev.CheckpointSaved) if c.reason == "request"]
    assert len(request) == 1 and request[0].batch_ndx == 3
    assert os.path.basename(request[0].path) == "e001-b000003.pt"
    state = load_checkpoint(request[0].path)
    assert (state["epoch"], state["batch_ndx"], state["total_samples"]) == (1, 3, 24)
    # training went on after it
    assert len([b for b in rec.of(ev.BatchDone) if b.phase == "trn"]) == 6


def test_stop_checkpoints_and_ends(train_argv):
    commands = CommandChannel()
    code, rec, _ = run_loop(train_argv("--epochs", "3"), hooks=[stop_at(commands, 1, 1)],
                            commands=commands)
    assert code == 0
    (finished,) = rec.of(ev.RunFinished)
    assert finished.state == ev.STOPPED
    assert [b.batch_ndx for b in rec.of(ev.BatchDone)] == [0, 1]
    (saved,) = rec.of(ev.CheckpointSaved)
    assert saved.reason == "stop" and finished.last_checkpoint == saved.path
    assert load_checkpoint(saved.path)["batch_ndx"] == 2


def test_stop_after_epoch_ends_the_run_once_the_epoch_is_validated_and_checkpointed(train_argv):
    commands = CommandChannel()

    def hook(event):          # asked in epoch 1's training: the run ends after its validation
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.epoch == 1 \
                and event.batch_ndx == 1:
            commands.put("stop-after-epoch")

    code, rec, console = run_loop(train_argv("--epochs", "3"), hooks=[hook],
                                  commands=commands)
    assert code == 0
    (asked,) = rec.of(ev.StopAfterEpoch)
    assert asked.epoch == 1
    assert "the run stops at the end of E1, once it is validated and checkpointed" in console
    assert [(m.epoch, m.phase) for m in rec.of(ev.EpochMetrics)] == [(1, "trn"), (1, "val")]
    (finished,) = rec.of(ev.RunFinished)
    assert (finished.state, finished.exit_code) == (ev.STOPPED, 0)
    saved = rec.of(ev.CheckpointSaved)
    assert [s.reason for s in saved] == ["epoch"] and finished.last_checkpoint == saved[0].path
    state = load_checkpoint(saved[0].path)                 # a resume goes on at E2
    assert (state["epoch"], state["epoch_done"]) == (1, True)


def _final_state(runs_dir):
    (run_dir,) = run_dirs(runs_dir)
    return load_checkpoint(list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1])


def _metrics_by_epoch(recorders):
    out = {}
    for rec in recorders:
        for m in rec.of(ev.EpochMetrics):
            out[(m.epoch, m.phase)] = (m.metrics, m.neg_correct, m.pos_correct)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    """Two epochs straight through, seed 7: the reference for the resume tests (workers do
    not change results, so one reference serves them all)."""
    runs_dir = tmp_path_factory.mktemp("straight")
    argv = ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", str(runs_dir), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--epochs", "2", "--seed", "7"]
    code, recorder, _ = run_loop(argv)
    assert code == 0
    return _final_state(runs_dir), recorder


@pytest.mark.parametrize("workers, stop_epoch, stop_batch, stop_phase", [
    (0, 1, 2, "trn"),
    (0, 2, 0, "val"),
    (2, 2, 4, "trn"),
])
def test_resume_is_exact(train_argv, tmp_path, uninterrupted, workers, stop_epoch, stop_batch,
                         stop_phase):
    base = ["--epochs", "2", "--num-workers", str(workers), "--seed", "7"]
    straight, rec_a = uninterrupted

    commands = CommandChannel()
    code, rec_b1, _ = run_loop(train_argv(*base, runs_dir=tmp_path / "b"),
                               hooks=[stop_at(commands, stop_epoch, stop_batch, stop_phase)],
                               commands=commands)
    assert code == 0 and rec_b1.of(ev.RunFinished)[0].state == ev.STOPPED
    (run_dir,) = run_dirs(tmp_path / "b")
    code, rec_b2, _ = run_loop(train_argv("--resume", run_dir, "--num-workers", str(workers),
                                          runs_dir=tmp_path / "b"))
    assert code == 0
    assert rec_b2.of(ev.RunStarted)[0].resumed_from.startswith(run_dir)
    resumed = _final_state(tmp_path / "b")

    assert resumed["total_samples"] == straight["total_samples"] == 96
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for key, st in straight["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"],
                           resumed["optimizer"]["state"][key]["momentum_buffer"])
    assert _metrics_by_epoch([rec_a]) == _metrics_by_epoch([rec_b1, rec_b2])
    # the resumed run continued in the same run directory (one run, not two)
    assert run_dirs(tmp_path / "b") == [run_dir]


class NanAt(LunaTrainingApp):
    """Forces a non-finite training loss at epoch 1, batch 2."""

    def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
        loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
        if self.model.training and self.epoch == 1 and batch_ndx == 2:
            return loss * float("nan")
        return loss


def test_nonfinite_loss_stops_with_last_good_weights(train_argv, tmp_path):
    code, rec, console = run_loop(train_argv("--epochs", "2", runs_dir=tmp_path / "nan"),
                                  app_cls=NanAt)
    assert code == 3
    (bad,) = rec.of(ev.NonFiniteLoss)
    assert (bad.epoch, bad.batch_ndx, bad.action) == (1, 2, "stop")
    finished = rec.of(ev.RunFinished)[0]
    assert "E1 batch 2" in finished.error
    assert "E1 batch 2: non-finite training loss" in console
    saved = load_checkpoint(finished.last_checkpoint)
    assert all(torch.isfinite(t).all() for t in saved["model"].values())

    # The weights equal those after batch 1 of a clean run: batch 2's update was not applied.
    commands = CommandChannel()
    run_loop(train_argv("--epochs", "2", runs_dir=tmp_path / "clean"),
             hooks=[stop_at(commands, 1, 1)], commands=commands)
    clean = _final_state(tmp_path / "clean")
    assert clean["batch_ndx"] == 2
    param_names = [n for n in clean["model"] if "running" not in n and "num_batches" not in n]
    for name in param_names:
        assert torch.equal(clean["model"][name], saved["model"][name]), name


def test_nonfinite_loss_skip_goes_on(train_argv):
    code, rec, _ = run_loop(train_argv("--epochs", "1", "--on-nonfinite", "skip"), app_cls=NanAt)
    assert code == 0
    assert [(e.batch_ndx, e.action) for e in rec.of(ev.NonFiniteLoss)] == [(2, "skip")]
    assert len([b for b in rec.of(ev.BatchDone) if b.phase == "trn"]) == 6


def test_nonfinite_loss_pauses_in_the_cockpit(train_argv):
    commands = CommandChannel()

    def hook(event):
        if isinstance(event, ev.StatusChanged) and event.state == ev.PAUSED:
            commands.stop()

    code, rec, _ = run_loop(train_argv("--epochs", "1"), app_cls=NanAt, hooks=[hook],
                            commands=commands, interactive=True)
    assert [(e.batch_ndx, e.action) for e in rec.of(ev.NonFiniteLoss)] == [(2, "pause")]
    paused = [e for e in rec.of(ev.StatusChanged) if e.state == ev.PAUSED]
    assert "non-finite loss at E1 batch 2" in paused[0].detail
    assert rec.of(ev.RunFinished)[0].state == ev.STOPPED


def test_resume_refuses_mismatched_options_and_data(train_argv, tmp_path, tiny_data):
    commands = CommandChannel()
    run_loop(train_argv("--epochs", "2"), hooks=[stop_at(commands, 1, 1)], commands=commands)
    (run_dir,) = run_dirs(tmp_path / "runs")
    code, rec, _ = run_loop(train_argv("--resume", run_dir, "--batch-size", "4"))
    assert code == 2 and "--batch-size 4" in rec.of(ev.RunFinished)[0].error
    code, rec, _ = run_loop(train_argv("--resume", run_dir, "--split", "series"))
    assert code == 2 and "--split series" in rec.of(ev.RunFinished)[0].error

    from luna_core.data.synth import write_synthetic_dataset

    other = tmp_path / "other"
    write_synthetic_dataset(other, series=4, seed=99, size_xy=64, slices=(20, 28),
                            negatives_per_series=12, nodules_per_series=(1, 2))
    argv = train_argv("--resume", run_dir)
    argv[argv.index("--data-dir") + 1] = str(other)
    code, rec, _ = run_loop(argv)
    assert code == 2 and "another data set" in rec.of(ev.RunFinished)[0].error
    # harmless changes are allowed: more epochs, other workers
    code, rec, _ = run_loop(train_argv("--resume", run_dir, "--epochs", "2"))
    assert code == 0
