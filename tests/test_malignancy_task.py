"""`--task malignancy` (the book's ch. 14) on the tiny set: the book's training order, the
nodules' own chunks, a real run fine-tuned from a classifier run with its AUC and the
diameter baseline, best.pt by AUC, and what it refuses. Machine-independent: counts, keys,
files and the frozen blocks' weights, never where SGD goes."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest
import torch

from luna_core.data.maldsets import (
    BENIGN,
    MALIGNANT,
    NON_NODULE,
    MalignancySampler,
    make_malignancy_datasets,
)
from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.run.metric_catalog import AUC, AUC_DIAMETER, AUC_HIGH, AUC_LOW
from luna_core.train.checkpoint import load_checkpoint
from tests.trainhelpers import run_dirs, run_loop


@pytest.fixture(scope="module")
def mal_data(tiny_data, tmp_path_factory):
    """The tiny set with the book's malignancy file: its nodules, malignant every other row
    (so both kinds are in training and in validation)."""
    root = tmp_path_factory.mktemp("mal")
    data = root / "luna"
    shutil.copytree(tiny_data["data_dir"], data)
    with open(data / "annotations.csv") as f:
        rows = list(csv.reader(f))
    with open(data / "annotations_with_malignancy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*rows[0], "mal_bool"])
        for k, row in enumerate(rows[1:]):
            w.writerow([*row, "True" if k % 2 else "False"])
    return {"data_dir": str(data), "cache_dir": str(root / "cache")}


def test_the_books_order_half_malignant_a_quarter_each_benign_and_non_nodules():
    classes = np.array([NON_NODULE] * 10 + [BENIGN] * 3 + [MALIGNANT] * 2)
    s = MalignancySampler(classes, seed=4, epoch_samples=16)
    s.set_epoch(1)
    order = s.order()
    got = classes[order]
    assert got[1::2].tolist() == [MALIGNANT] * 8
    assert got[0::4].tolist() == [BENIGN] * 4 and got[2::4].tolist() == [NON_NODULE] * 4
    assert sorted(set(np.array(order)[1::2].tolist())) == [13, 14]       # both, cycled
    with pytest.raises(LunaInputError, match="no malignant nodules"):
        MalignancySampler(classes[:13], seed=0)


def test_the_sets_hold_the_nodules_at_their_annotated_centres(mal_data):
    trn, val = make_malignancy_datasets(mal_data["data_dir"], mal_data["cache_dir"], 2)
    assert trn.nodule_count + val.nodule_count == 6
    assert not set(trn.series_uids) & set(val.series_uids)
    assert len(val) == val.nodule_count                       # validation: nodules only
    assert len(trn) > trn.nodule_count                        # + the non-nodules
    chunk, label, uid, center = val[0]
    assert chunk.shape == (1, 32, 48, 48) and chunk.dtype == torch.int16
    assert label.tolist() == ([0, 1] if val.malignant[0] else [1, 0])
    neg = trn[trn.nodule_count]
    assert neg[1].tolist() == [1, 0]
    assert os.path.isdir(os.path.join(mal_data["cache_dir"], "chunks-nodules-32x48x48"))


def test_without_the_books_file_the_run_says_where_it_looked(tiny_data, tmp_path, capsys):
    data = tmp_path / "luna"
    shutil.copytree(tiny_data["data_dir"], data)
    os.remove(data / "annotations_with_malignancy.csv")
    argv = ["--data-dir", str(data), "--cache-dir", str(tmp_path / "c"),
            "--runs-dir", str(tmp_path / "runs"), "--task", "malignancy", "--device", "cpu",
            "--num-workers", "0", "--val-stride", "2"]
    code, _rec, console = run_loop(argv)
    assert code == 2
    assert "annotations_with_malignancy.csv" in console
    assert not os.path.exists(tmp_path / "runs" / "luna")       # nothing half-made


def test_a_fine_tuned_run_scores_auc_beside_the_diameter_and_keeps_best_by_auc(mal_data,
                                                                                tmp_path,
                                                                                capsys):
    base = ["--data-dir", mal_data["data_dir"], "--cache-dir", mal_data["cache_dir"],
            "--device", "cpu", "--threads", "1", "--num-workers", "0", "--val-stride", "2",
            "--batch-size", "4"]
    code, _rec, console = run_loop([*base, "--runs-dir", str(tmp_path / "cls"), "--epochs",
                                    "1", "--max-batches", "2", "--split", "series"])
    assert code == 0, console
    (cls_dir,) = run_dirs(tmp_path / "cls")
    classifier = load_checkpoint(os.path.join(cls_dir, "checkpoints", "best.pt"))["model"]
    code, rec, console = run_loop([*base, "--runs-dir", str(tmp_path / "mal"), "--task",
                                   "malignancy", "--finetune", cls_dir, "--epochs", "2",
                                   "--epoch-samples", "8", "--froc-bootstrap", "50"])
    assert code == 0, console
    assert f"fine-tuning {cls_dir}/checkpoints/best.pt: training head_linear" in console
    start = rec.of(ev.RunStarted)[0]
    assert start.options["finetune"] == cls_dir and start.options["lr"] == 0.003
    vals = [m for m in rec.of(ev.EpochMetrics) if m.phase == "val"]
    for m in vals:
        assert {AUC.key, AUC_LOW.key, AUC_HIGH.key, AUC_DIAMETER.key} <= set(m.metrics)
        assert m.metrics[AUC_LOW.key] <= m.metrics[AUC.key] <= m.metrics[AUC_HIGH.key]
    assert "E1 val_mal  AUC " in console and " · diameter alone " in console
    (mal_dir,) = run_dirs(tmp_path / "mal")
    best = load_checkpoint(os.path.join(mal_dir, "checkpoints", "best.pt"))
    assert best["best_metric"] == AUC.key
    aucs = [m.metrics[AUC.key] for m in vals]
    assert best["best_score"] == pytest.approx(max(aucs))
    from luna_tui.cli import main as cli_main

    assert cli_main(["runs", mal_dir, "--runs-dir", str(tmp_path / "mal")]) == 0
    summary = capsys.readouterr().out
    assert "(picks best.pt)" in summary and "diameter alone" in summary
    assert cli_main(["compare", mal_dir, "--runs-dir", str(tmp_path / "mal")]) == 0
    assert "diameter alone" in capsys.readouterr().out
    # the worst-graded nodules: each of its kind, labelled as the book's file says
    from luna_core.data.csvread import read_malignancy
    from luna_core.run.example_file import MAL_KINDS, read_examples

    saved = rec.of(ev.ExamplesSaved)
    assert saved and set(saved[-1].counts) == set(MAL_KINDS)
    examples = read_examples(saved[-1].path)
    assert examples.task == "malignancy" and examples.examples
    graded = read_malignancy(os.path.join(mal_data["data_dir"],
                                          "annotations_with_malignancy.csv"))
    for e in examples.examples:
        (row,) = [r for r in graded[e.series_uid]
                  if max(abs(a - b) for a, b in zip(r[:3], e.center_xyz)) < 1e-6]
        assert e.is_nodule == row[4] and e.diameter_mm == pytest.approx(row[3])
        assert {"missed_malignant": e.is_nodule and e.probability <= 0.5,
                "false_malignant": not e.is_nodule and e.probability > 0.5,
                "best_malignant": e.is_nodule and e.probability > 0.5}[e.kind]
    assert cli_main(["examples", mal_dir]) == 0
    assert "malignant nodules graded benign (0.5 or less)" in capsys.readouterr().out
    for name, value in best["model"].items():           # depth 1: all but the head frozen
        if name.startswith("block") and "num_batches" not in name and "running" not in name:
            assert torch.equal(value, classifier[name]), name


def test_what_it_refuses(capsys):
    from luna_core.train.options import parse_options

    options, _ = parse_options(["--task", "malignancy"], disk=False)
    assert (options.lr, options.split, options.epoch_samples) == (0.003, "series", 100_000)
    for argv, said in ((["--task", "malignancy", "--balanced"], "--balanced does not apply"),
                       (["--finetune", "x"], "--finetune does not apply to --task nodule"),
                       (["--task", "seg", "--finetune", "x"], "--finetune does not apply")):
        with pytest.raises(SystemExit):
            parse_options(argv, disk=False)
        assert said in capsys.readouterr().err
