"""The straggler rule on timings the test sets: who is named, why, and when (held for HOLD
windows both ways, so one slow window does not flap it)."""

from __future__ import annotations

import random

import pytest

from luna_core.run.straggler import HOLD, RankWindow, StragglerWatch, judge, scores


def rank(k: int, data=0.002, copy=0.001, forward=0.020, backward=0.040, step=0.003):
    return RankWindow(rank=k, host="gpu-a", device=f"cuda:{k}", batches=10, data_s=data,
                      copy_s=copy, forward_s=forward, backward_s=backward, step_s=step,
                      samples_per_s=500.0)


def test_a_rank_waiting_for_data_is_named_with_its_share_and_the_others():
    windows = [rank(0), rank(1), rank(2, data=0.080), rank(3)]
    suspect = judge(windows)
    share = 0.080 / (0.080 + 0.001 + 0.020 + 0.040 + 0.003)
    others = 0.002 / (0.002 + 0.001 + 0.020 + 0.040 + 0.003)
    assert suspect.rank == 2 and suspect.part == "data wait"
    assert suspect.reason == (f"rank 2: data wait {100 * share:.0f} % of its step, "
                              f"others ≤ {100 * others:.0f} %")
    assert scores(windows)[2] == pytest.approx(0.023 / 0.101)
    assert scores(windows)[0] == 1.0


def test_a_slow_forward_is_named_against_the_median_of_the_others():
    windows = [rank(k) for k in range(8)]
    windows[5] = rank(5, forward=0.036)
    suspect = judge(windows)
    assert (suspect.rank, suspect.part) == (5, "forward")
    assert suspect.reason == "rank 5: forward 1.8× the median"
    windows[5] = rank(5, forward=0.028)             # 1.4x: within the rule's margin
    assert judge(windows) is None


def test_equal_ranks_with_jitter_name_nobody():
    rng = random.Random(0)
    watch = StragglerWatch()
    for t in range(200):
        windows = [rank(k, data=0.002 * rng.uniform(0.5, 1.5),
                        forward=0.020 * rng.uniform(0.8, 1.2)) for k in range(2)]
        assert watch.update(windows, float(t)) is None
    assert watch.named_s == 0.0


def test_named_after_hold_windows_and_cleared_after_hold_quiet_ones():
    watch = StragglerWatch()
    slow = [rank(0), rank(1, data=0.080)]
    even = [rank(0), rank(1)]
    assert watch.update(slow, 0.0) is None              # one slow window: not yet
    assert watch.update(even, 1.0) is None
    for t in range(HOLD - 1):
        assert watch.update(slow, 2.0 + t) is None
    named = watch.update(slow, 2.0 + HOLD - 1)
    assert named is not None and named.rank == 1 and watch.named_since == 2.0 + HOLD - 1
    for t in range(HOLD - 1):                           # quiet windows: still named
        assert watch.update(even, 10.0 + t).rank == 1
    assert watch.update(even, 10.0 + HOLD - 1) is None
    assert watch.named_s == pytest.approx(10.0 + HOLD - 1 - (2.0 + HOLD - 1))
    assert watch.named_for(20.0) == 0.0


def test_a_rank_slower_than_its_own_best_scores_below_one():
    watch = StragglerWatch()
    watch.update([rank(0), rank(1)], 0.0)
    later = rank(1, forward=0.040)
    watch.update([rank(0), later], 1.0)
    assert watch.self_score(later) == pytest.approx(0.023 / 0.043)
    assert watch.self_score(rank(0)) == 1.0


def test_one_rank_alone_has_no_straggler():
    assert judge([rank(0, data=1.0)]) is None
