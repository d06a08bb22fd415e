"""Checkpoint writes are atomic: a write killed half-way or a full disk leaves the previous
checkpoint intact and loadable, and a failed write does not end training.

Machine-independent by construction: the writes and their failures are injected."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.train import checkpoint as ck
from tests.trainhelpers import run_loop


def _state(value: float, size: int = 10) -> dict:
    return {"format_version": ck.CHECKPOINT_FORMAT_VERSION, "model": {"w": torch.full((size,),
                                                                                       value)}}


def test_full_disk_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "e001-end.pt"
    ck.atomic_torch_save(_state(1.0), str(path))

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    with pytest.raises(ck.CheckpointError, match="No space left on device") as info:
        ck.atomic_torch_save(_state(2.0), str(path))
    assert str(path) in str(info.value)
    assert os.listdir(tmp_path) == ["e001-end.pt"]  # no temp file left behind
    assert ck.load_checkpoint(str(path))["model"]["w"][0] == 1.0


def test_write_killed_half_way_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "e001-end.pt"
    ck.atomic_torch_save(_state(1.0), str(path))
    # A writer whose torch.save writes half of a new checkpoint, says so, and hangs there:
    # the kill lands mid-write every time.
    script = textwrap.dedent(f"""
        import io, time, torch
        from luna_core.train import checkpoint as ck

        real_save = torch.save

        def half_then_hang(obj, f):
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: buffer.tell() // 2])
            f.flush()
            print("half written", flush=True)
            time.sleep(3600)

        ck.torch.save = half_then_hang
        state = {{"format_version": 1, "model": {{"w": torch.full((100_000,), 2.0)}}}}
        ck.atomic_torch_save(state, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half written"
        (tmp,) = [n for n in os.listdir(tmp_path) if n.startswith(".e001-end.pt.tmp-")]
        assert os.path.getsize(tmp_path / tmp) > 100_000       # half of the new one is there
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = ck.load_checkpoint(str(path))  # the previous one, intact
    assert state["model"]["w"][0] == 1.0
    # the orphaned temp file is cleaned up by the next prune
    ck.prune_checkpoints(str(tmp_path), keep=3)
    assert os.listdir(tmp_path) == ["e001-end.pt"]


def test_weights_only_rejects_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "obj": ck.CheckpointError("x")}, str(path))
    with pytest.raises(ck.CheckpointError, match="not a readable") as err:
        ck.load_checkpoint(str(path))
    assert "objects other than tensors and plain values" in str(err.value)
    assert "Weights only load failed" not in str(err.value)   # torch's paragraph: not passed on
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError, match=str(junk)) as err:
        ck.load_checkpoint(str(junk))
    assert str(err.value).endswith("(neither a zip nor a pickle: not a PyTorch file, or cut "
                                   "short)")
    cut = tmp_path / "cut.pt"                             # a real one, its second half lost
    torch.save({"format_version": 1, "w": torch.zeros(1000)}, str(cut))
    cut.write_bytes(cut.read_bytes()[:2000])
    with pytest.raises(ck.CheckpointError, match="cut short"):
        ck.load_checkpoint(str(cut))


def test_retention_keeps_newest_and_best(tmp_path):
    run_dir, tmp_path = tmp_path, tmp_path / "checkpoints"
    tmp_path.mkdir()
    for name in ("e001-b000002.pt", "e001-end.pt", "e002-b000003.pt", "e002-end.pt",
                 "e003-b000001.pt", ck.BEST_NAME):
        ck.atomic_torch_save(_state(0.0), str(tmp_path / name))
    ck.prune_checkpoints(str(tmp_path), keep=3)
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "e002-b000003.pt", "e002-end.pt",
                                           "e003-b000001.pt"]
    assert ck.resolve_resume_path(str(run_dir)).endswith("e003-b000001.pt")
    assert ck.resolve_resume_path(str(tmp_path / "e002-end.pt")).endswith("e002-end.pt")
    with pytest.raises(ck.CheckpointError, match="no checkpoints"):
        ck.resolve_resume_path(str(run_dir.parent))


def test_failed_checkpoint_write_is_reported_and_training_goes_on(train_argv, monkeypatch):
    commands = CommandChannel()
    real_save = ck.torch.save

    def flaky_save(obj, f):
        if obj.get("batch_ndx") == 2 and not obj["epoch_done"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(ck.torch, "save", flaky_save)

    def hook(event):
        if isinstance(event, ev.BatchDone) and event.phase == "trn" and event.batch_ndx == 1:
            commands.checkpoint()

    code, rec, console = run_loop(train_argv("--epochs", "1"), hooks=[hook], commands=commands)
    assert code == 0
    assert "checkpoint failed, training state kept in memory" in console
    assert "No space left on device" in console
    assert [c.reason for c in rec.of(ev.CheckpointSaved)] == ["epoch"]
