"""LUNA16's score in a real run: the log line, the event file and TensorBoard carry the
hand-worked FROC / CPM, AUC, AP and confusion counts of a LUNA-format set with an
annotations_excluded.csv, two candidates on one nodule, a nodule no candidate hits and a scan
without nodules; and ``--split series`` keeps every scan on one side.

Machine-independent by construction: the validation probabilities are the test's (a loop
whose model outputs are overwritten per candidate), not where SGD went on this CPU.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from luna_core.data.dsets import LunaDataset
from luna_core.run import events as ev
from luna_core.train.metrics import METRICS_PRED_NDX
from luna_core.training import LunaTrainingApp
from tests.trainhelpers import run_dirs, run_loop


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _xyz(row) -> np.ndarray:
    return np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])


def _fmt(xyz) -> str:
    return ",".join(f"{v:.4f}" for v in xyz)


@pytest.fixture(scope="module")
def scored_set(tiny_data, tmp_path_factory):
    """The tiny set's volumes with new CSVs. Series sorted by uid: S0 and S2 go to validation
    (``--split series --val-stride 2``), S1 and S3 to training.

    S0 (scan A): nodule N1 at candidate a1 (class 1, p 0.3) with a2 (class 0, p 0.4) inside
    it too; a3 (p 0.8) a false positive; a4 (p 0.95) inside an excluded finding of diameter
    -1 (10 mm); nodule N2 that no candidate hits. S2 (scan C): no nodules, c1 (p 0.6) and
    c2 (p 0.05) false positives.
    Curve: (0,0) (1/2,0) (1,0) (1,1) (3/2,1): sensitivity 0,0,0,1,1,1,1 at 1/8 ... 8,
    CPM 4/7. At 0.5: tp 0, fp 3 (a3 a4 c1), tn 2, fn 1. AUC and AP: a1 ranks above c2 only:
    1/5 and 1/5."""
    src = Path(tiny_data["data_dir"])
    root = tmp_path_factory.mktemp("scored")
    data = root / "luna"
    data.mkdir()
    for sub in src.glob("subset*"):
        (data / sub.name).symlink_to(sub.resolve())
    on_disk = sorted(p.name[:-4] for p in src.glob("subset*/*.mhd"))
    s0, s1, s2, s3 = on_disk
    by_uid: dict[str, list[np.ndarray]] = {}
    for row in _rows(src / "candidates.csv"):
        by_uid.setdefault(row["seriesuid"], []).append(_xyz(row))

    a = by_uid[s0]
    a1 = a[0]
    a2 = a1 + np.array([1.0, 0.0, 0.0])              # 1 mm off: inside N1 (radius 2)
    r1 = 2.0
    far = [p for p in a[1:] if np.linalg.norm(p - a1) > 12]
    a3 = far[0]
    a4 = next(p for p in far[1:] if np.linalg.norm(p - a3) > 12)
    n2 = a1 + np.array([0.0, 0.0, 400.0])           # far from every candidate
    c1, c2 = by_uid[s2][0], by_uid[s2][1]
    val_rows = [(s0, a1, 1), (s0, a2, 0), (s0, a3, 0), (s0, a4, 0), (s2, c1, 0), (s2, c2, 0)]
    trn_rows = [(u, p, int(k == 0)) for u in (s1, s3) for k, p in enumerate(by_uid[u][:4])]
    with open(data / "candidates.csv", "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,class\n")
        for uid, p, cls in val_rows + trn_rows:
            f.write(f"{uid},{_fmt(p)},{cls}\n")
    with open(data / "annotations.csv", "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
        f.write(f"{s0},{_fmt(a1)},{2 * r1:.4f}\n{s0},{_fmt(n2)},8.0\n")
        f.write(f"{s1},{_fmt(by_uid[s1][0])},6.0\n")
    with open(data / "annotations_excluded.csv", "w") as f:
        f.write("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
        f.write(f"{s0},{_fmt(a4)},-1\n")
    probability = {(s0, _fmt(a1)): 0.3, (s0, _fmt(a2)): 0.4, (s0, _fmt(a3)): 0.8,
                   (s0, _fmt(a4)): 0.95, (s2, _fmt(c1)): 0.6, (s2, _fmt(c2)): 0.05}
    return {"data_dir": str(data), "cache_dir": str(root / "cache"),
            "probability": probability, "series": on_disk}


def scripted(probability):
    class ScriptedProbabilities(LunaTrainingApp):
        """Validation reports the probability the test gives each candidate."""

        def compute_batch_loss(self, batch_ndx, batch_tup, metrics_g):
            loss = super().compute_batch_loss(batch_ndx, batch_tup, metrics_g)
            if not self.model.training:
                start = batch_ndx * self.cli_args.batch_size
                cands = self.val_ds.candidate_list[start:start + len(batch_tup[0])]
                for j, c in enumerate(cands):
                    metrics_g[METRICS_PRED_NDX, start + j] = probability[
                        (c.series_uid, _fmt(c.center_xyz))]
            return loss
    return ScriptedProbabilities


def test_a_validation_carries_the_hand_worked_froc_everywhere(scored_set, tmp_path):
    runs = tmp_path / "runs"
    argv = ["--data-dir", scored_set["data_dir"], "--cache-dir", scored_set["cache_dir"],
            "--runs-dir", str(runs), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--split", "series", "--val-stride", "2",
            "--froc-bootstrap", "50"]
    code, rec, console = run_loop(argv, app_cls=scripted(scored_set["probability"]))
    assert code == 0, console
    (val,) = [m for m in rec.of(ev.EpochMetrics) if m.phase == "val"]
    score = val.score
    assert (score["scans"], score["nodules"], score["nodules_without_candidate"]) == (2, 1, 1)
    assert score["excluded_candidates"] == 1
    assert score["sensitivity"] == pytest.approx([0, 0, 0, 1, 1, 1, 1])
    assert score["cpm"] == pytest.approx(4 / 7)
    assert score["cpm_low"] <= score["cpm"] <= score["cpm_high"]
    assert score["confusion"] == {"tp": 0, "fp": 3, "tn": 2, "fn": 1}
    assert score["auc"] == pytest.approx(0.2) and score["average_precision"] == pytest.approx(0.2)
    assert val.metrics["froc/cpm"] == pytest.approx(4 / 7)

    # the console: the book's three lines, then the score's
    lines = [line for line in console.splitlines() if " E1 val" in line]
    assert [line.split(" INFO ")[1][:11] for line in lines] == [
        "E1 val     ", "E1 val_neg ", "E1 val_pos ", "E1 val_froc"]
    assert "CPM 0.571 [" in lines[3] and "sens@1FP 1.00, AUC 0.20" in lines[3]

    # the event file: the same score
    (run_dir,) = run_dirs(runs)
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        saved = [json.loads(line) for line in f]
    (val_saved,) = [e for e in saved if e["kind"] == "epoch_metrics" and e["phase"] == "val"]
    assert val_saved["score"]["cpm"] == pytest.approx(4 / 7)
    assert val_saved["score"]["confusion"]["fp"] == 3
    assert len(val_saved["score"]["curve_fps"]) == len(val_saved["score"]["curve_sens"]) > 8

    # TensorBoard: the validation writer has the CPM, the seven sensitivities, AUC and AP
    (log_dir,) = glob.glob(str(runs / "luna" / "*-val_cls-dlwpt"))
    acc = EventAccumulator(log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"froc/cpm", "froc/sens_at_0.125fp", "froc/sens_at_1fp", "froc/sens_at_8fp",
            "roc/auc", "pr/average_precision"} <= tags
    assert math.isclose(acc.Scalars("froc/cpm")[0].value, 4 / 7, rel_tol=1e-6)
    assert [acc.Scalars(f"confusion/{k}")[0].value for k in ("tp", "fp", "tn", "fn")] == [
        0, 3, 2, 1]
    assert acc.Scalars("froc/sens_at_1fp")[0].value == 1.0


def test_split_by_series_leaves_no_scan_on_both_sides(tiny_data):
    kwargs = dict(data_dir=tiny_data["data_dir"], cache_dir=tiny_data["cache_dir"])
    trn = LunaDataset(val_stride=2, is_val=False, split="series", **kwargs)
    val = LunaDataset(val_stride=2, is_val=True, split="series", **kwargs)
    assert set(trn.series_uids).isdisjoint(val.series_uids)
    uids = sorted(set(trn.series_uids) | set(val.series_uids))
    assert sorted(val.series_uids) == uids[::2]
    assert len(trn) + len(val) == len(LunaDataset(val_stride=0, **kwargs))
    # the book's split (the default) shares scans between the two
    book_trn = LunaDataset(val_stride=2, is_val=False, **kwargs)
    book_val = LunaDataset(val_stride=2, is_val=True, **kwargs)
    assert set(book_trn.series_uids) & set(book_val.series_uids)
