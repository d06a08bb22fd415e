"""The book's augmentation: the affine it applies, parameters that depend on (seed, epoch,
position) only, and a trainer that gives the same run whatever the workers or a resume.

Machine-independent by construction: the affine is checked on set inputs; the trainer tests
compare runs computed on this machine bit for bit (workers, resume), never against numbers
from elsewhere."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from luna_core.run import events as ev
from luna_core.run.command_table import CommandChannel
from luna_core.train.augment import (
    BOOK,
    Augmentation,
    affine_params,
    augment,
    batch_params,
    resample,
    sample_rng,
)
from tests.trainhelpers import run_dirs, run_loop


def volume(shape=(1, 1, 6, 8, 10)) -> torch.Tensor:
    return torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape) * 3.0 - 500


def position_where(aug, pick) -> int:
    """The first sample position whose draws ``pick`` likes."""
    for position in range(2000):
        if pick(affine_params(aug, sample_rng(5, 1, position))):
            return position
    raise AssertionError("no such position")


def test_a_flip_of_the_col_axis_is_exactly_a_flip():
    aug = Augmentation(flip=True)
    pos = position_where(aug, lambda t: t[0, 0] < 0 and t[1, 1] > 0 and t[2, 2] > 0)
    vol = volume()
    out = augment(vol, aug, seed=5, epoch=1, positions=[pos])
    torch.testing.assert_close(out, torch.flip(vol, dims=[-1]), rtol=0, atol=1e-3)


def test_a_pure_shift_of_two_voxels_moves_the_chunk_and_pads_with_the_border():
    vol = volume()
    width = vol.shape[-1]
    theta = np.eye(4)[:3]
    theta[0, 3] = 2 * 2 / width                 # normalised coordinates span 2: two voxels
    out = resample(vol, np.stack([theta]))
    torch.testing.assert_close(out[..., :-2], vol[..., 2:], rtol=0, atol=1e-3)
    torch.testing.assert_close(out[..., -2:], vol[..., -1:].expand_as(out[..., -2:]),
                               rtol=0, atol=1e-3)


def test_each_part_stays_within_the_books_bounds():
    for position in range(200):
        t = affine_params(Augmentation(offset=0.1), sample_rng(0, 3, position))
        assert np.allclose(t[:, :3], np.eye(3)) and np.all(np.abs(t[:, 3]) <= 0.1)
        t = affine_params(Augmentation(scale=0.2), sample_rng(0, 3, position))
        diag = np.diag(t[:, :3])
        assert np.all((diag >= 0.8) & (diag <= 1.2)) and not t[:, 3].any()
        t = affine_params(Augmentation(rotate=True), sample_rng(0, 3, position))
        assert t[2, 2] == 1 and t[2, :2].tolist() == [0, 0]          # about the index axis
        assert np.allclose(t[:2, :2] @ t[:2, :2].T, np.eye(2))
    noise = augment(torch.zeros(2, 1, 8, 8, 8), Augmentation(noise=25.0), 0, 1, [0, 1])
    assert 20 < float(noise.std()) < 30 and not torch.equal(noise[0], noise[1])


def test_parameters_depend_on_seed_epoch_and_position_only():
    aug = Augmentation(**BOOK)
    theta, seeds = batch_params(aug, 7, 2, range(32))
    # the same samples split into other batches, or over two ranks, get the same draws
    for order in ([range(0, 16), range(16, 32)], [range(0, 32, 2), range(1, 32, 2)]):
        parts = [batch_params(aug, 7, 2, list(p)) for p in order]
        got = {pos: (t, s) for p, (ts, ss) in zip(order, parts, strict=True)
               for pos, t, s in zip(p, ts, ss, strict=True)}
        for pos in range(32):
            assert np.array_equal(got[pos][0], theta[pos]) and got[pos][1] == seeds[pos]
    other_epoch, _ = batch_params(aug, 7, 3, range(32))
    assert not np.allclose(other_epoch, theta)
    vol = volume((4, 1, 6, 8, 10))
    a = augment(vol, aug, 7, 2, [3, 4, 5, 6])
    b = torch.cat([augment(vol[:2], aug, 7, 2, [3, 4]), augment(vol[2:], aug, 7, 2, [5, 6])])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_the_augmented_option_turns_on_every_part_at_the_books_values():
    none = SimpleNamespace(augmented=False, augment_flip=False, augment_offset=0.0,
                           augment_scale=0.0, augment_rotate=False, augment_noise=0.0)
    assert not Augmentation.from_options(none).enabled
    every = Augmentation.from_options(SimpleNamespace(**{**vars(none), "augmented": True}))
    assert every == Augmentation(**BOOK)
    one = Augmentation.from_options(SimpleNamespace(**{**vars(none), "augment_noise": 10.0}))
    assert one == Augmentation(noise=10.0) and one.describe() == "noise 10"


def _losses(rec):
    return [(b.epoch, b.phase, b.batch_ndx, b.loss) for b in rec.of(ev.BatchDone)]


def test_an_augmented_balanced_run_is_the_same_with_workers_and_after_a_resume(train_argv,
                                                                               tmp_path):
    argv = ["--epochs", "2", "--augmented", "--balanced", "--epoch-samples", "24",
            "--seed", "3"]
    code, plain, _ = run_loop(train_argv(*argv, runs_dir=tmp_path / "a"))
    assert code == 0
    with_workers = train_argv(*argv, runs_dir=tmp_path / "b")
    with_workers[with_workers.index("--num-workers") + 1] = "1"
    code, workers, _ = run_loop(with_workers)
    assert code == 0 and _losses(workers) == _losses(plain)
    unaugmented = run_loop(train_argv("--epochs", "1", "--seed", "3",
                                      runs_dir=tmp_path / "c"))[1]
    trn = [x for x in _losses(plain) if x[:2] == (1, "trn")]
    assert trn[1:] != [x for x in _losses(unaugmented) if x[:2] == (1, "trn")][1:]

    # stopped after epoch 1 batch 2 with a checkpoint, then resumed: the same run
    commands = CommandChannel()

    def stop_after_batch_2(event):
        if isinstance(event, ev.BatchDone) and (event.epoch, event.phase,
                                                event.batch_ndx) == (1, "trn", 2):
            commands.stop()

    runs = tmp_path / "d"
    code, first, _ = run_loop(train_argv(*argv, runs_dir=runs), hooks=[stop_after_batch_2],
                              commands=commands)
    (run_dir,) = run_dirs(runs)
    code, second, _ = run_loop(train_argv("--epochs", "2", "--resume", run_dir, runs_dir=runs))
    assert code == 0
    assert _losses(first) + _losses(second) == _losses(plain)

    # a changed augmentation is refused, naming the option
    ckpt = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))[0]
    code, refused, _ = run_loop(train_argv(
        "--epochs", "3", "--resume", os.path.join(run_dir, "checkpoints", ckpt),
        "--augment-noise", "5", runs_dir=runs))
    assert code == 2
    assert "--augment-noise 5.0" in refused.of(ev.RunFinished)[0].error


@pytest.mark.parametrize("size", [32])
def test_one_grid_sample_call_per_batch(size, monkeypatch):
    import torch.nn.functional as F

    calls = []
    real = F.grid_sample
    monkeypatch.setattr(F, "grid_sample", lambda *a, **k: calls.append(a[0].shape)
                        or real(*a, **k))
    augment(torch.zeros(size, 1, 8, 8, 8), Augmentation(**BOOK), 0, 1, range(size))
    assert calls == [torch.Size([size, 1, 8, 8, 8])]
