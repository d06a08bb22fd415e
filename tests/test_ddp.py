"""torchrun with two CPU processes (gloo) on the tiny set: rank 0 alone writes, metrics count
every sample once, validation equals a single process on the same weights, SIGTERM to the
launcher checkpoints and resume continues.

Machine-independent by construction: counts, and a two-process validation compared with one
process on the same weights to float rounding (a probability within 1e-5 of the threshold may
fall either side)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys

import torch

from luna_core.run import events as ev
from luna_core.run.eventfile import read_events
from luna_core.train.checkpoint import load_checkpoint
from luna_core.training import EpochSampler, LunaTrainingApp
from tests.trainhelpers import trn_batches, wait_for_events


def _torchrun(argv):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "luna_tui", "--headless", *argv]


def test_sampler_shards_cover_every_sample_once():
    shards = [EpochSampler(11, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    orders = [s.order() for s in shards]
    assert [len(o) for o in orders] == [4, 4, 4]
    valid = [[i for i, ok in zip(o, s.valid_mask(4).tolist(), strict=True) if ok]
             for o, s in zip(orders, shards, strict=True)]
    assert sorted(i for v in valid for i in v) == list(range(11))
    # rank 0 gathers everyone's rows and asks for each rank's mask: it must be that rank's
    for r in range(3):
        assert torch.equal(shards[0].valid_mask(4, r), shards[r].valid_mask(4))
    assert [s.valid_mask(4).tolist().count(False) for s in shards] == [0, 0, 1]
    single = EpochSampler(11, seed=3)
    single.set_epoch(2)
    assert sorted(single.order()) == list(range(11))


def test_two_processes_rank0_writes_and_metrics_match_single_process(train_argv, tmp_path):
    # --val-stride 5: 43 training (4 nodules) and 11 validation (2 nodules) samples, odd, so
    # each phase pads one rank's shard with a repeated sample that metrics must not count
    argv = train_argv("--epochs", "1", "--val-stride", "5")
    result = subprocess.run(_torchrun(argv), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(os.listdir(tmp_path / "runs" / "luna"))
    assert len(runs) == 3 and runs[0].endswith("-dlwpt")  # one run dir + trn/val TensorBoard
    assert [r.split("-", 3)[-1] for r in runs[1:]] == ["trn_cls-dlwpt", "val_cls-dlwpt"]
    run_dir = tmp_path / "runs" / "luna" / runs[0]
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["best.pt", "e001-end.pt"]
    for tb in runs[1:]:
        assert len(os.listdir(tmp_path / "runs" / "luna" / tb)) == 1  # one writer, rank 0
    events = read_events(str(run_dir / "events.jsonl"))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.world_size == 2
    assert (started.trn_samples, started.val_samples) == (43, 11)
    trn, val = [e for e in events if isinstance(e, ev.EpochMetrics)]
    assert (trn.neg_count, trn.pos_count) == (39, 4)  # every sample once, padding dropped
    assert (val.neg_count, val.pos_count) == (9, 2)
    # samples seen: 2 ranks x 22, the padded repeat included (it was trained on)
    assert trn.total_samples == 44
    assert result.stderr.count("E1 trn_neg") == 1  # rank 1 logs warnings and errors only

    # The same weights, validated by a single process: the same counts and losses, counted
    # here from the per-sample labels, predictions and losses (not by compute_metrics).
    state = load_checkpoint(str(run_dir / "checkpoints" / "e001-end.pt"))
    app = LunaTrainingApp(sys_argv=argv)
    app.device = app._pick_device("cpu")
    app.trn_ds, app.val_ds = app._init_datasets()
    app.model, app.optimizer = app._init_model()
    app.model.load_state_dict(state["model"])
    app.val_dl = app._init_dataloader(app.val_ds, shuffle=False)
    label, pred, loss = app.validate_epoch(1)
    assert label.numel() == 11
    neg, pos = label == 0, label == 1
    assert (int(neg.sum()), int(pos.sum())) == (val.neg_count, val.pos_count)
    # Two processes and one compute the same forward pass in different batches, so their
    # probabilities agree to float rounding only: a sample within 1e-5 of the threshold may
    # fall either side (where SGD put the weights decides whether there is one).
    sure = (pred - 0.5).abs() > 1e-5
    for label_is, right, counted in ((neg, pred <= 0.5, val.neg_correct),
                                     (pos, pred > 0.5, val.pos_correct)):
        assert int((label_is & right & sure).sum()) <= counted \
            <= int((label_is & (right | ~sure)).sum())
    assert abs(float(loss.mean()) - val.metrics["loss/all"]) < 1e-5
    assert abs(float(loss[pos].mean()) - val.metrics["loss/pos"]) < 1e-5


def test_sigterm_to_torchrun_checkpoints_and_resume_continues(train_argv, tmp_path):
    proc = subprocess.Popen(_torchrun(train_argv("--epochs", "20", "--num-workers", "1")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_events(tmp_path, lambda r: len(trn_batches(r)) >= 1, proc, timeout=120)
    proc.send_signal(signal.SIGTERM)  # to the launcher only, as a batch system does
    proc.communicate(timeout=60)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "luna" / "*-dlwpt"))
    events = read_events(os.path.join(run_dir, "events.jsonl"))
    saved = [e for e in events if isinstance(e, ev.CheckpointSaved)]
    assert saved and saved[-1].reason == "stop"
    assert isinstance(events[-1], ev.RunFinished) and events[-1].state == ev.STOPPED
    state = load_checkpoint(saved[-1].path)
    assert state["run"]["world_size"] == 2 and state["trn_metrics"].shape[0] == 2

    resumed = subprocess.run(_torchrun(train_argv("--resume", run_dir, "--epochs", "1",
                                                  "--num-workers", "1")),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = read_events(os.path.join(run_dir, "events.jsonl"))
    trn = [e for e in events if isinstance(e, ev.EpochMetrics) and e.phase == "trn"]
    assert (trn[-1].neg_count, trn[-1].pos_count) == (43, 5)
    final = load_checkpoint(os.path.join(run_dir, "checkpoints", "e001-end.pt"))
    assert final["total_samples"] == 48
    assert all(torch.isfinite(t).all() for t in final["model"].values())


def test_two_processes_train_seg_and_count_every_slices_pixels_once(train_argv, tmp_path,
                                                                    tiny_data):
    """--task seg under torchrun: the validation's label pixels are every validation slice's,
    each once (an odd count pads one rank's shard), whatever the weights; rank 0 alone writes
    the run, its examples and TensorBoard."""
    from luna_core.data.segdsets import make_seg_datasets

    argv = train_argv("--task", "seg", "--epochs", "1", "--val-stride", "2",
                      "--epoch-samples", "7", "--batch-size", "2")
    result = subprocess.run(_torchrun(argv), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = glob.glob(str(tmp_path / "runs" / "luna" / "*"))
    tensorboard = sorted(d.rsplit("-", 2)[-2] for d in folders if "_seg-" in d)
    assert tensorboard == ["trn_seg", "val_seg"]          # the book's ch. 13 names
    (run_dir,) = [d for d in folders if "_seg-" not in d]
    events = read_events(os.path.join(run_dir, "events.jsonl"))
    trn, val = [e for e in events if isinstance(e, ev.EpochMetrics)]
    _trn_ds, val_ds = make_seg_datasets(tiny_data["data_dir"], tiny_data["cache_dir"], 2)
    assert len(val_ds) % 2 == 1                   # the padding case
    labels = sum(int(val_ds[i][1].sum()) for i in range(len(val_ds)))
    assert val.pos_count == labels
    assert trn.total_samples == 8                 # 2 ranks x 2 batches x 2, padding included
    assert os.path.exists(os.path.join(run_dir, "examples", "E001.zip"))
    assert result.stderr.count("E1 val_all") == 1
