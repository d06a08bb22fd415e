"""The malignancy score (the book's ch. 14): AUC and the diameter-alone baseline, by hand, with
paired bootstrap intervals over the nodules."""

from __future__ import annotations

import numpy as np
import pytest

from luna_core.run import metric_catalog as mc
from luna_core.score.malignancy_score import malignancy_line, malignancy_scalars

AUC, AUC_LOW, AUC_HIGH = mc.AUC, mc.AUC_LOW, mc.AUC_HIGH
AUC_DIAMETER, AUC_DIAMETER_LOW, AUC_DIAMETER_HIGH = (mc.AUC_DIAMETER, mc.AUC_DIAMETER_LOW,
                                                     mc.AUC_DIAMETER_HIGH)


def test_auc_and_the_diameter_baseline_by_hand():
    # 2 malignant, 3 benign: pairs (m, b) ranked right by the model: (0.9 > all 3), (0.4 >
    # 0.3, 0.1; < 0.5) -> 5 of 6; by diameter: malignant 20 and 8 against 10, 6, 4 -> 5 of 6
    # as well, with a tie counted half when there is one
    p = [0.9, 0.4, 0.5, 0.3, 0.1]
    malignant = [True, True, False, False, False]
    diameter = [20.0, 8.0, 10.0, 6.0, 8.0]                 # 8 vs 8: a tie, half
    got = malignancy_scalars(p, malignant, diameter, bootstrap=0)
    assert got[AUC.key] == pytest.approx(5 / 6)
    assert got[AUC_DIAMETER.key] == pytest.approx((3 + 1 + 0.5) / 6)
    assert AUC_LOW.key not in got
    assert malignancy_line(got) == "AUC 0.83 · diameter alone 0.75"


def test_the_intervals_hold_their_auc_and_one_class_has_none():
    rng = np.random.default_rng(3)
    malignant = rng.random(80) < 0.4
    p = np.clip(malignant * 0.3 + rng.random(80) * 0.7, 0, 1)
    diameter = 5 + malignant * 4 + rng.random(80) * 10
    got = malignancy_scalars(p, malignant, diameter, bootstrap=500, seed=1)
    assert got[AUC_LOW.key] <= got[AUC.key] <= got[AUC_HIGH.key]
    assert got[AUC_DIAMETER_LOW.key] <= got[AUC_DIAMETER.key] <= got[AUC_DIAMETER_HIGH.key]
    assert got == malignancy_scalars(p, malignant, diameter, bootstrap=500, seed=1)   # seeded
    line = malignancy_line(got)
    assert line.startswith(f"AUC {got[AUC.key]:.2f} [") and " · diameter alone " in line
    assert malignancy_scalars([0.2, 0.3], [False, False], [5.0, 6.0]) == {}
    assert malignancy_line({}) == "AUC - · diameter alone -"


def test_the_paired_difference_says_whether_the_model_beats_the_diameter():
    rng = np.random.default_rng(5)
    malignant = rng.random(60) < 0.5
    noise = rng.random(60)
    perfect = malignant * 1.0 + 0.01 * noise            # ranks every pair right: AUC 1
    low_key, high_key = mc.AUC_VS_DIAMETER_LOW.key, mc.AUC_VS_DIAMETER_HIGH.key
    beats = malignancy_scalars(perfect, malignant, noise, bootstrap=300, seed=2)
    assert beats[AUC.key] == 1.0 and beats[low_key] > 0
    assert malignancy_line(beats).endswith(
        f": beats it (+{beats[low_key]:.2f} to +{beats[high_key]:.2f})")
    loses = malignancy_scalars(noise, malignant, perfect, bootstrap=300, seed=2)
    assert loses[high_key] < 0 and ": loses to it (" in malignancy_line(loses)
    # each draw's difference, by hand: the same draws as the two intervals
    from luna_core.score.intervals import scan_weights, weighted_auc

    weights = scan_weights(60, 300, 2)
    diffs = [weighted_auc(noise, malignant, w) - weighted_auc(perfect, malignant, w)
             for w in weights]
    assert (loses[low_key], loses[high_key]) == pytest.approx(
        tuple(np.percentile(diffs, [2.5, 97.5])))
    same = malignancy_scalars(noise, malignant, noise, bootstrap=100, seed=2)
    assert same[low_key] == same[high_key] == 0.0
    assert malignancy_line(same).endswith(": not told apart (+0.00 to +0.00)")
