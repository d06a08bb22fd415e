"""Where a model stands (issue 31, item 1): the AUC's interval over scan resamples, the CPM
of chance, the verdict against chance and against the run's past, and the histogram's
reading. Controlled inputs only: scores the tests set, never a trained model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from luna_core.run import metric_catalog as mc
from luna_core.run import verdict as vd
from luna_core.score.froc import FP_LEVELS, FrocScorer
from luna_core.score.intervals import auc_interval, chance_cpm, scan_weights, weighted_auc
from luna_core.score.validation import ValidationScorer
from luna_tui.model import score_plots as dg


def candidate_set(scans: int = 40, negatives: int = 60, seed: int = 0):
    """Each scan: one nodule (one candidate on it) and ``negatives`` candidates far from it."""
    rng = np.random.default_rng(seed)
    uids, xyz, labels = [], [], []
    for s in range(scans):
        uids += [f"scan{s:03d}"] * (negatives + 1)
        xyz.append((0.0, 0.0, 0.0))
        xyz += [(50.0 + 10 * k, 0.0, 0.0) for k in range(negatives)]
        labels += [True] + [False] * negatives
    return uids, np.array(xyz), np.array(labels), rng


def test_weighted_auc_is_scikit_learns_with_ties_and_weights():
    rng = np.random.default_rng(1)
    p = rng.integers(0, 10, 300) / 10.0                 # many ties
    labels = rng.random(300) < 0.2
    weight = rng.integers(0, 4, 300).astype(float)
    assert weighted_auc(p, labels, np.ones(300)) == pytest.approx(roc_auc_score(labels, p))
    assert weighted_auc(p, labels, weight) == pytest.approx(
        roc_auc_score(labels, p, sample_weight=weight))
    assert weighted_auc(p, np.zeros(300, bool), np.ones(300)) is None


def test_the_auc_interval_holds_half_at_random_and_not_when_separated():
    uids, _xyz, labels, rng = candidate_set()
    scan = np.repeat(np.arange(40), 61)
    weights = scan_weights(40, 500, seed=3)
    low, high = auc_interval(rng.random(len(labels)), labels, scan, weights)
    assert low < 0.5 < high
    separated = np.where(labels, 0.6 + 0.4 * rng.random(len(labels)),
                         0.7 * rng.random(len(labels)))
    low, high = auc_interval(separated, labels, scan, weights)
    assert 0.5 < low <= high <= 1.0


def test_the_cpm_of_chance_is_what_random_scores_get():
    uids, xyz, labels, rng = candidate_set()
    scorer = FrocScorer(uids, xyz, labels, findings=None)
    cpms = [scorer.score(rng.random(len(labels)), bootstrap=0).cpm for _ in range(200)]
    expected = chance_cpm(40, 40 * 60, FP_LEVELS)
    # 60 non-nodules a scan: at f false positives per scan, f/60 of them and of the nodules
    assert expected == pytest.approx(sum(min(1, f / 60) for f in FP_LEVELS) / 7)
    assert np.mean(cpms) == pytest.approx(expected, abs=0.01)
    assert scorer.score(rng.random(len(labels)), bootstrap=0).chance_cpm == pytest.approx(
        expected)


def test_a_validation_scores_the_auc_interval_on_the_cpms_draws():
    uids, xyz, labels, rng = candidate_set()
    scorer = ValidationScorer(uids, xyz, labels, findings=None, bootstrap=200, seed=5)
    p = np.where(labels, 0.5 + 0.5 * rng.random(len(labels)), 0.8 * rng.random(len(labels)))
    score = scorer.score(np.arange(len(labels)), p, epoch=2)
    assert score.auc_low < score.auc < score.auc_high
    again = scorer.score(np.arange(len(labels)), p, epoch=2)      # seeded: same interval
    assert (again.auc_low, again.auc_high) == (score.auc_low, score.auc_high)
    scalars = score.scalars()
    assert scalars[mc.AUC_LOW.key] == score.auc_low
    assert scalars[mc.CPM_CHANCE.key] == pytest.approx(score.froc.chance_cpm)
    assert score.to_dict()["auc_high"] == score.auc_high


def metrics(auc, low, high):
    return {mc.AUC.key: auc, mc.AUC_LOW.key: low, mc.AUC_HIGH.key: high}


def test_standing_comes_from_the_interval():
    word, line = vd.standing(metrics(0.52, 0.41, 0.63))        # the run
    assert word == vd.CHANCE and line == "AUC 0.52 [0.41–0.63]: no better than chance"
    assert vd.standing(metrics(0.93, 0.90, 0.95))[0] == vd.BETTER
    assert vd.standing(metrics(0.30, 0.20, 0.45))[0] == vd.WORSE
    assert vd.standing(metrics(0.62, 0.50, 0.70))[0] == vd.CHANCE   # 0.5 on the edge
    assert vd.standing({mc.AUC.key: 0.9})[0] == vd.UNKNOWN


def test_the_cpm_trend_against_the_runs_past():
    assert vd.cpm_trend([(1, 0.2)]) is None
    assert vd.cpm_trend([(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]) == \
        "CPM rising 3 validations in a row (its best)"
    assert vd.cpm_trend([(1, 0.5), (2, 0.6), (3, 0.4), (4, 0.3)]) == \
        "CPM falling 2 validations in a row (0.30; its best 0.60 at E2)"
    assert vd.cpm_trend([(1, 0.5), (2, 0.3), (3, 0.305)]) == \
        "CPM flat (0.30) for 2 validations (0.30; its best 0.50 at E1)"
    assert vd.cpm_trend([(1, 0.1), (2, None), (3, 0.3)]) == \
        "CPM rising 1 validation in a row (its best)"
    line = vd.verdict(metrics(0.52, 0.41, 0.63), [(1, 0.05), (2, 0.08)])
    assert line == "AUC 0.52 [0.41–0.63]: no better than chance; CPM rising 1 validation " \
                   "in a row (its best)"


def test_cpm_meaning_says_what_good_and_chance_are():
    line = vd.cpm_meaning({mc.CPM_CHANCE.key: 0.027})
    assert "1/8 to 8 false alarms per scan" in line and "chance here 0.03" in line
    assert "about 0.9" in line


def test_the_histogram_reading_does_not_call_a_threshold_that_passes_everything_found():
    # the validation: 7 of 12 nodules and 156 of 280 non-nodules at 0.5 or more
    hist_pos = [0] * 20
    hist_pos[5], hist_pos[12] = 5, 7
    hist_neg = [0] * 20
    hist_neg[3], hist_neg[11] = 124, 156
    score = {"hist_bins": 20, "hist_pos": hist_pos, "hist_neg": hist_neg}
    line = dg.reading(score)
    assert "most are found" not in line
    assert "7 of 12 (58 %)" in line and "56 % of non-nodules" in line
    assert "does not separate them" in line
    hist_neg[3], hist_neg[11] = 275, 5                      # a threshold that does separate
    assert "most are found at the threshold, with 1.8 % of non-nodules" in dg.reading(score)


def test_the_score_line_under_the_class_table_says_at_chance():
    from luna_tui.model.snapshot import PhaseMetrics, RunSnapshot
    from luna_tui.widgets.class_table import score_line

    def line(low: float) -> str:
        pm = PhaseMetrics(phase="val", epoch=3, neg_correct=0, neg_count=9, pos_correct=0,
                          pos_count=1, metrics={mc.CPM.key: 0.05, mc.CPM_LOW.key: 0.02,
                                                mc.CPM_HIGH.key: 0.09, **metrics(0.52, low, 0.63)})
        return score_line(RunSnapshot(metrics={"val": pm})).plain

    assert line(0.41).endswith("AUC 0.52 · at chance")
    assert line(0.51).endswith("AUC 0.52 · above chance")
