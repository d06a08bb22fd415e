"""The end-to-end detection score (the book's ch. 14, LUNA16's detection track): the FROC over
every annotated nodule, misses counted, against a reference written here; and the book's
3x4 table on hand-built detections."""

from __future__ import annotations

import numpy as np
import pytest

from luna_core.score.detection import Detection, book_table, detection_froc, table_text
from luna_core.score.froc import FP_LEVELS, Findings


def reference_cpm(detections, findings: Findings, series) -> tuple[float, int]:
    """The challenge's FROC, plainly: thresholds at each distinct probability, high to low;
    a nodule is found once a detection within its radius passes; a detection that hits no
    nodule and lies in no excluded region is a false positive; sensitivity over every
    annotated nodule of the scans; read off at each level from the last point at or below it,
    linearly towards the next (flat past the end). Returns (CPM, nodules)."""
    nodules = [(u, n) for u in series for n in findings.nodules.get(u, ())]

    def hits(d, n):
        return np.linalg.norm(np.subtract(d.center_xyz, n[:3])) <= n[3] / 2

    def excluded(d):
        return any(np.linalg.norm(np.subtract(d.center_xyz, e[:3])) <= (e[3] if e[3] > 0
                                                                        else 10.0) / 2
                   for e in findings.excluded.get(d.series_uid, ()))

    fps, sens = [0.0], [0.0]
    for t in sorted({d.probability for d in detections}, reverse=True):
        passed = [d for d in detections if d.probability >= t]
        found = sum(1 for u, n in nodules
                    if any(d.series_uid == u and hits(d, n) for d in passed))
        fp = sum(1 for d in passed
                 if not any(hits(d, n) for u, n in nodules if u == d.series_uid)
                 and not excluded(d))
        fps.append(fp / len(series))
        sens.append(found / len(nodules))
    values = []
    for level in FP_LEVELS:
        k = max(i for i, f in enumerate(fps) if f <= level)
        if k + 1 < len(fps) and fps[k + 1] > fps[k]:
            w = (level - fps[k]) / (fps[k + 1] - fps[k])
            values.append(sens[k] + w * (sens[k + 1] - sens[k]))
        else:
            values.append(sens[k])
    return float(np.mean(values)), len(nodules)


def _scene(seed: int):
    rng = np.random.default_rng(seed)
    series = [f"1.2.{s}" for s in range(6)]
    nodules, excluded, detections = {}, {}, []
    for s, uid in enumerate(series):
        nodules[uid] = [(100.0 * s + 10 * k, 5.0, 0.0, float(rng.uniform(4, 12)))
                        for k in range(1 + s % 3)]
        excluded[uid] = [(100.0 * s + 60, 60.0, 0.0, -1.0)]
        if s == 5:
            continue                           # an analysed scan with no detection at all
        for x, y, z, d in nodules[uid]:
            for _ in range(int(rng.integers(0, 3))):      # 0, 1 or 2 hits
                off = rng.uniform(-0.3, 0.3, 3) * d
                detections.append(Detection(uid, (x + off[0], y + off[1], z + off[2]),
                                            float(rng.uniform(0.2, 1.0))))
        for _ in range(int(rng.integers(3, 12))):
            detections.append(Detection(uid, (100.0 * s + float(rng.uniform(-40, 90)),
                                              float(rng.uniform(30, 200)), 0.0),
                                        float(rng.uniform(0, 0.9))))
        detections.append(Detection(uid, (100.0 * s + 61, 61.0, 0.0), 0.95))   # excluded
    return detections, Findings(nodules, excluded), series


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_detection_cpm_counts_every_nodule_as_the_reference_does(seed):
    detections, findings, series = _scene(seed)
    got = detection_froc(detections, findings, series, bootstrap=0)
    want, nodules = reference_cpm(detections, findings, series)
    assert got.nodules == nodules                      # misses included
    assert got.cpm == pytest.approx(want, abs=1e-12)
    assert got.nodules_without_candidate >= len(findings.nodules["1.2.5"])
    low_high = detection_froc(detections, findings, series, bootstrap=200, seed=1)
    assert low_high.cpm_low <= got.cpm <= low_high.cpm_high


def test_a_nodule_no_detection_reaches_caps_the_sensitivity():
    findings = Findings({"a": [(0.0, 0.0, 0.0, 10.0), (50.0, 0.0, 0.0, 10.0)]})
    one = [Detection("a", (1.0, 0.0, 0.0), 0.9)]
    result = detection_froc(one, findings, ["a"], bootstrap=0)
    assert result.nodules == 2 and result.cpm == pytest.approx(0.5)
    assert max(result.sensitivity) == pytest.approx(0.5)
    none = detection_froc([], findings, ["a"], bootstrap=0)
    assert none.cpm == 0.0 and none.nodules == 2
    with pytest.raises(ValueError, match="not analysed"):
        detection_froc([Detection("b", (0.0, 0.0, 0.0), 0.5)], findings, ["a"])


def test_the_books_table_on_hand_built_detections():
    nodules = {"a": [(0.0, 0.0, 0.0, 10.0), (8.0, 0.0, 0.0, 10.0), (100.0, 0.0, 0.0, 6.0)],
               "b": [(0.0, 0.0, 0.0, 5.0)],
               "c": []}                                       # a series without nodules
    malignant = {"a": [True, False, False], "b": [True], "c": []}
    detections = [
        # between nodules 0 and 1 of a (4 from each, both within 7): counts for both
        Detection("a", (4.0, 0.0, 0.0), 0.9, 0.8),
        # nodule 0 hit again, filtered out: the highest (malignant) stands
        Detection("a", (0.5, 0.0, 0.0), 0.3, 0.9),
        # nodule 2 (diameter 6: within 4.2) missed by one 5 away, so a non-nodule
        Detection("a", (105.0, 0.0, 0.0), 0.7, 0.1),
        Detection("c", (0.0, 0.0, 0.0), 0.2, None),           # filtered out, non-nodule
        Detection("c", (9.0, 9.0, 0.0), 0.6, None),           # not graded: predicted benign
    ]
    table = book_table(detections, nodules, malignant)
    assert table.tolist() == [[0, 1, 2, 0],     # non-nodule: filtered out, 2 benign calls
                              [1, 0, 0, 1],     # benign: nodule 2 missed; nodule 1 via the
                              [1, 0, 0, 1]]     # shared detection; malignant: b missed, a0
    assert table[1].sum() == 2 and table[2].sum() == 2        # each class's nodules
    empty = book_table([], nodules, malignant)
    assert empty.tolist() == [[0, 0, 0, 0], [2, 0, 0, 0], [2, 0, 0, 0]]
    lines = table_text(table)
    assert lines[0].endswith("complete miss | filtered out | predicted benign | "
                             "predicted malignant")
    assert lines[3].startswith("malignant  |")


def test_a_submission_is_written_exactly_and_a_bad_one_named(tmp_path):
    from luna_core.errors import LunaInputError
    from luna_core.score.detection import read_submission, write_submission

    detections, findings, series = _scene(1)
    path = str(tmp_path / "predictions" / "E001.csv")
    write_submission(path, detections)
    back = read_submission(path)
    assert back == [Detection(d.series_uid, tuple(map(float, d.center_xyz)), d.probability)
                    for d in detections]
    assert detection_froc(back, findings, series, bootstrap=0).cpm == \
        detection_froc(detections, findings, series, bootstrap=0).cpm
    with open(path, "a") as f:
        f.write("1.2.0,1,2,3,1.5\n")
    with pytest.raises(LunaInputError) as err:
        read_submission(path)
    assert path in str(err.value) and f":{len(detections) + 2}" in str(err.value)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(LunaInputError, match="header"):
        read_submission(str(tmp_path / "x.csv"))
