"""--balanced and --epoch-samples: the book's balanced order, exact per epoch and per rank; the
trainer uses it for training only; a resume refuses a change.

Machine-independent by construction: orders and label counts only."""

from __future__ import annotations

import os

import numpy as np
import pytest

from luna_core.data.sampler import BALANCED_EPOCH_SAMPLES, BalancedSampler, EpochSampler
from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from tests.trainhelpers import run_loop

LABELS = np.array([i % 10 == 3 for i in range(100)])          # 10 positives, 90 negatives
POS = set(np.flatnonzero(LABELS).tolist())


@pytest.mark.parametrize("ratio", [1, 2, 5])
def test_every_ratio_plus_one_th_sample_is_a_positive_and_lists_cycle(ratio):
    s = BalancedSampler(LABELS, seed=3, ratio=ratio, epoch_samples=240)
    s.set_epoch(1)
    order = s.indices()
    assert len(order) == 240 and len(s) == 240
    assert [i in POS for i in order] == [k % (ratio + 1) == 0 for k in range(240)]
    positives = order[::ratio + 1]
    assert len(positives) == -(-240 // (ratio + 1))
    # the positives are one permutation of the 10, repeated: each once per 10
    for a in range(0, len(positives) - 9, 10):
        assert sorted(positives[a:a + 10]) == sorted(POS)
    negatives = [i for k, i in enumerate(order) if k % (ratio + 1)]
    assert sorted(negatives[:90]) == sorted(set(range(100)) - POS)


def test_same_seed_same_order_other_epoch_other_order():
    a = BalancedSampler(LABELS, seed=3, ratio=1, epoch_samples=50)
    b = BalancedSampler(LABELS, seed=3, ratio=1, epoch_samples=50)
    for s in (a, b):
        s.set_epoch(2)
    assert a.indices() == b.indices()
    b.set_epoch(3)
    assert a.indices() != b.indices()
    assert BalancedSampler(LABELS, seed=4, ratio=1, epoch_samples=50).indices() != \
        BalancedSampler(LABELS, seed=3, ratio=1, epoch_samples=50).indices()
    assert BalancedSampler(LABELS, seed=0).epoch_samples == BALANCED_EPOCH_SAMPLES


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_the_balanced_order_exactly_once(world_size):
    n = 101                                               # not a multiple of the ranks
    full = BalancedSampler(LABELS, seed=1, ratio=2, epoch_samples=n)
    full.set_epoch(4)
    want = full.indices()
    shards = []
    for rank in range(world_size):
        s = BalancedSampler(LABELS, seed=1, ratio=2, rank=rank, world_size=world_size,
                            epoch_samples=n)
        s.set_epoch(4)
        shard = s.order()
        assert len(shard) == s.shard_size == -(-n // world_size)
        shards.append((shard, s.valid_mask(len(shard))))
    merged = [shards[k % world_size][0][k // world_size] for k in range(n)]
    assert merged == want                                 # rank r takes every r-th
    assert sum(int(mask.sum()) for _, mask in shards) == n  # padding is not counted


def test_resuming_mid_epoch_continues_the_same_balanced_order():
    s = BalancedSampler(LABELS, seed=1, ratio=1, epoch_samples=64)
    s.set_epoch(2)
    order = s.order()
    s.set_epoch(2, start=24)
    assert list(s) == order[24:]


def test_epoch_samples_without_balancing_repeat_whole_permutations():
    s = EpochSampler(10, seed=0, epoch_samples=25)
    s.set_epoch(1)
    order = s.indices()
    assert len(order) == 25 and sorted(order[:10]) == list(range(10))
    assert sorted(order[10:20]) == list(range(10))
    plain = EpochSampler(10, seed=0)
    plain.set_epoch(1)
    assert order[:10] == plain.indices()                  # the default order is unchanged


def test_balanced_needs_both_classes_and_a_ratio():
    with pytest.raises(LunaInputError, match="nodules and non-nodules"):
        BalancedSampler(np.zeros(10, bool), seed=0)
    with pytest.raises(LunaInputError, match="ratio of at least 1"):
        BalancedSampler(LABELS, seed=0, ratio=0)


def test_the_trainer_balances_training_only_and_resume_refuses_a_change(train_argv, tmp_path):
    argv = train_argv("--epochs", "1", "--balanced", "--epoch-samples", "20")
    code, rec, _ = run_loop(argv)
    assert code == 0
    metrics = {m.phase: m for m in rec.of(ev.EpochMetrics)}
    trn_labels, _preds = metrics["trn"].per_sample
    assert len(trn_labels) == 20 and int(np.sum(trn_labels)) == 10        # alternating
    val_labels, _ = metrics["val"].per_sample
    started = rec.of(ev.RunStarted)[0]
    assert len(val_labels) == started.val_samples                          # all of them
    assert int(np.sum(val_labels)) < len(val_labels) / 4                  # never balanced
    trn_batches = [b for b in rec.of(ev.BatchDone) if b.phase == "trn"]
    assert len(trn_batches) == 3                                          # 20 / batch 8

    run_dir = started.run_dir
    ckpt = os.path.join(run_dir, "checkpoints", "e001-end.pt")
    code, rec2, console = run_loop(train_argv("--epochs", "2", "--resume", ckpt,
                                              "--balanced", "2"))
    assert code == 2
    (finished,) = rec2.of(ev.RunFinished)
    assert "--balanced 2" in finished.error and "made with 1" in finished.error
    code, rec3, _ = run_loop(train_argv("--epochs", "2", "--resume", ckpt))
    assert code == 0                                  # the options come from the checkpoint
    trn = [m for m in rec3.of(ev.EpochMetrics) if m.phase == "trn"]
    assert len(trn[-1].per_sample[0]) == 20 and int(np.sum(trn[-1].per_sample[0])) == 10
