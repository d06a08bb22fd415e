"""LUNA16's FROC / CPM: hand-worked examples, and a straightforward reference implementation
on random data. Pure numpy on given probabilities: machine-independent by construction."""

from __future__ import annotations

import numpy as np
import pytest

from luna_core.score.froc import FP_LEVELS, Findings, FrocScorer
from luna_core.score.validation import ValidationScorer


def hand_worked():
    """Three scans. A: nodule N1 (r 5) hit by two candidates (0.9 and 0.4), a false positive
    (0.8) and a candidate inside an excluded finding of unknown size (diameter -1: 10 mm).
    B: nodule N2 (r 3) hit at 2.9 mm (0.2), a candidate 3.1 mm off (0.95, a false positive),
    and nodule N3 that no candidate hits. C: no nodules, two false positives (0.1, 0.05)."""
    cands = [  # uid, xyz, label, p
        ("A", (1, 0, 0), 1, 0.9), ("A", (0, 2, 0), 0, 0.4), ("A", (20, 0, 0), 0, 0.8),
        ("A", (40, 0, 0), 0, 0.3),
        ("B", (0, 0, 2.9), 1, 0.2), ("B", (0, 0, 3.1), 0, 0.95),
        ("C", (5, 5, 5), 0, 0.1), ("C", (9, 9, 9), 0, 0.05),
    ]
    findings = Findings(nodules={"A": [(0, 0, 0, 10.0)],
                                 "B": [(0, 0, 0, 6.0), (50, 50, 50, 8.0)]},
                        excluded={"A": [(40, 0, 0, -1.0)]})
    uids, xyz, labels, p = zip(*cands)
    return FrocScorer(uids, xyz, labels, findings), np.array(p)


def test_the_hand_worked_example():
    scorer, p = hand_worked()
    result = scorer.score(p, bootstrap=0)
    assert (result.scans, result.nodules, result.nodules_without_candidate) == (3, 2, 1)
    assert result.excluded_candidates == 1 and result.false_positive_candidates == 4
    assert result.nodule_scores == (0.9, 0.2)      # N1 once, at its best hit
    # curve: (0,0) (1/3,0) (1/3,.5) (2/3,.5) (2/3,1) (1,1) (4/3,1)
    assert result.sensitivity == pytest.approx((0, 0, 0.5, 1, 1, 1, 1))
    assert result.cpm == pytest.approx(4.5 / 7)
    assert result.cpm_low is None


def test_a_scan_without_false_positives_and_a_set_without_nodules():
    one = FrocScorer(["A"], [(0, 0, 0)], [1], Findings({"A": [(0, 0, 0, 4.0)]}))
    assert one.score([0.7], bootstrap=0).cpm == pytest.approx(1.0)
    none = FrocScorer(["A", "B"], [(0, 0, 0), (1, 1, 1)], [0, 0], Findings({}))
    result = none.score([0.7, 0.2], bootstrap=100)
    assert result.cpm is None and result.nodules == 0 and result.sensitivity == ()


def test_without_annotations_each_positive_candidate_is_a_nodule():
    scorer = FrocScorer(["A", "A", "B"], np.zeros((3, 3)), [1, 1, 0], None)
    result = scorer.score([0.9, 0.1, 0.5], bootstrap=0)
    assert result.nodules == 2 and result.nodule_source == "candidates"
    # (0,0) (0,.5) (1/2,.5) (1/2,1): 1/8 -> .5, 1/4 -> .5, from 1/2 on 1
    assert result.sensitivity == pytest.approx((0.5, 0.5, 1, 1, 1, 1, 1))


def test_the_bootstrap_is_seeded_and_brackets_the_cpm():
    rng = np.random.default_rng(3)
    uids, xyz, labels, findings = random_set(rng, scans=30)
    p = np.clip(labels * 0.4 + rng.random(len(labels)) * 0.6, 0, 1)
    scorer = FrocScorer(uids, xyz, labels, findings)
    a = scorer.score(p, bootstrap=200, seed=[7, 3])
    b = scorer.score(p, bootstrap=200, seed=[7, 3])
    c = scorer.score(p, bootstrap=200, seed=[7, 4])
    assert (a.cpm_low, a.cpm_high) == (b.cpm_low, b.cpm_high)
    assert (a.cpm_low, a.cpm_high) != (c.cpm_low, c.cpm_high)
    assert a.cpm_low < a.cpm < a.cpm_high


# ----------------------------------------------------------------------------- reference

def random_set(rng, scans=12):
    uids, xyz, labels = [], [], []
    nodules, excluded = {}, {}
    for s in range(scans):
        uid = f"1.2.{s}"
        nods = [(rng.uniform(-50, 50, 3), rng.uniform(4, 20)) for _ in range(rng.integers(0, 3))]
        nodules[uid] = [(*c, d) for c, d in nods]
        if rng.random() < 0.4:
            excluded[uid] = [(*rng.uniform(-50, 50, 3), rng.choice([-1.0, 8.0]))]
        for c, d in nods:                             # hits, some of them twice
            for _ in range(rng.integers(0, 3)):
                xyz.append(c + rng.normal(0, d / 5, 3))
                labels.append(1)
                uids.append(uid)
        for _ in range(rng.integers(5, 40)):
            xyz.append(rng.uniform(-60, 60, 3))
            labels.append(0)
            uids.append(uid)
    return uids, np.array(xyz), np.array(labels), Findings(nodules, excluded)


def reference_cpm(uids, xyz, p, findings):
    """Loops, as one would write it by hand from the rules."""
    scans = sorted(set(uids))
    nodule_score, fps = {}, []
    for i, uid in enumerate(uids):
        hit = False
        for j, (x, y, z, d) in enumerate(findings.nodules.get(uid, [])):
            if np.linalg.norm(np.array(xyz[i]) - (x, y, z)) <= d / 2:
                hit = True
                nodule_score[(uid, j)] = max(nodule_score.get((uid, j), -1), p[i])
        inside = any(np.linalg.norm(np.array(xyz[i]) - (x, y, z)) <= (5 if d < 0 else d / 2)
                     for x, y, z, d in findings.excluded.get(uid, []))
        if not hit and not inside:
            fps.append(p[i])
    n = len(nodule_score)
    points = [(0.0, 0.0)]
    for t in sorted(set(p), reverse=True):
        points.append((sum(f >= t for f in fps) / len(scans),
                       sum(s >= t for s in nodule_score.values()) / n))
    sens = []
    for level in FP_LEVELS:
        k = max(i for i, (f, _) in enumerate(points) if f <= level)
        if k + 1 == len(points):
            sens.append(points[k][1])
            continue
        (f0, s0), (f1, s1) = points[k], points[k + 1]
        sens.append(s0 + (level - f0) / (f1 - f0) * (s1 - s0))
    return float(np.mean(sens)), sens


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_a_reference_implementation_on_random_data(seed):
    rng = np.random.default_rng(seed)
    uids, xyz, labels, findings = random_set(rng)
    p = np.round(rng.random(len(uids)), 2 if seed % 2 else 6)   # odd seeds: ties
    result = FrocScorer(uids, xyz, labels, findings).score(p, bootstrap=0)
    cpm, sens = reference_cpm(uids, xyz, p, findings)
    assert result.cpm == pytest.approx(cpm, abs=1e-12)
    assert result.sensitivity == pytest.approx(sens, abs=1e-12)


# ----------------------------------------------------------------------------- ranking

def test_auc_average_precision_confusion_and_histograms():
    uids = ["A"] * 4
    scorer = ValidationScorer(uids, np.zeros((4, 3)), [0, 0, 1, 1], None, bootstrap=0)
    score = scorer.score([0, 1, 2, 3], [0.1, 0.62, 0.35, 0.8], epoch=1)
    assert score.auc == pytest.approx(0.75)            # 3 of the 4 pairs ranked right
    assert score.average_precision == pytest.approx((1 + 2 / 3) / 2)
    assert score.confusion == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    assert sum(score.hist_pos) == 2 and sum(score.hist_neg) == 2
    assert score.hist_neg[2] == 1 and score.hist_neg[12] == 1     # 0.1 and 0.62, 20 bins
    assert score.scalars()["roc/auc"] == pytest.approx(0.75)
    line = score.log_line(3)
    assert line.startswith("E3 val_froc CPM ") and "AUC 0.75" in line


def test_one_class_only_has_no_auc():
    scorer = ValidationScorer(["A", "A"], np.zeros((2, 3)), [0, 0], None, bootstrap=0)
    score = scorer.score([0, 1], [0.2, 0.3], epoch=1)
    assert score.auc is None and "roc/auc" not in score.scalars()
    assert "froc/cpm" not in score.scalars()
    assert "CPM - (no nodule" in score.log_line(1)


def test_a_subset_of_the_rows_is_scored_on_its_own_scans():
    rng = np.random.default_rng(11)
    uids, xyz, labels, findings = random_set(rng, scans=8)
    p = rng.random(len(uids))
    scorer = ValidationScorer(uids, xyz, labels, findings, bootstrap=0)
    half = np.arange(len(uids) // 2)
    got = scorer.score(half, p[half], epoch=1).froc
    want = FrocScorer([uids[i] for i in half], xyz[half], labels[half], findings)
    assert got.cpm == want.score(p[half], bootstrap=0).cpm
    assert got.scans == len(set(uids[i] for i in half))



def test_a_resample_summed_over_the_head_of_the_order_reads_off_as_the_whole_curve():
    """The bootstrap sums each resample's curve only as far as the last level needs."""
    from luna_core.score.froc import _Curve, _read_off

    rng = np.random.default_rng(5)
    scans = 6
    fp_probs, fp_scan = rng.random(600), rng.integers(0, scans, 600)   # 100 FPs per scan
    nod_scores, nod_scan = rng.random(9), rng.integers(0, scans, 9)
    curve = _Curve(fp_probs, fp_scan, nod_scores, nod_scan, scans)
    assert curve.head < len(curve.fp_upto)                  # the cut is taken
    levels = np.asarray(FP_LEVELS)
    for _ in range(50):
        weight = rng.multinomial(scans, np.full(scans, 1 / scans)).astype(float)
        if not weight[nod_scan].any():
            continue
        whole = _read_off(*curve.points(weight), levels)
        assert curve.levels(weight, levels) == pytest.approx(whole, abs=1e-12)


def test_many_resamples_at_once_read_off_as_each_one_alone():
    """The bootstrap's batched read-off equals the one-resample-at-a-time one."""
    from luna_core.score.froc import _Curve

    rng = np.random.default_rng(8)
    scans = 7
    fp_probs, fp_scan = np.round(rng.random(900), 2), rng.integers(0, scans, 900)
    nod_scores, nod_scan = np.round(rng.random(12), 2), rng.integers(0, scans, 12)
    curve = _Curve(fp_probs, fp_scan, nod_scores, nod_scan, scans)
    levels = np.asarray(FP_LEVELS)
    weights = rng.multinomial(scans, np.full(scans, 1 / scans), size=60).astype(float)
    weights = weights[weights[:, nod_scan].sum(axis=1) > 0]
    many = curve.levels_many(weights, levels)
    one = np.array([curve.levels(w, levels) for w in weights])
    assert many == pytest.approx(one, abs=1e-12)
