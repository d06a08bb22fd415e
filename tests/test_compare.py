"""`luna-tui runs` and `luna-tui compare`: best values with their epochs, the options that
differ, per-epoch validation metrics, CSV.

Machine-independent by construction: the expected bests are worked out from the run's own
metrics events, whatever values SGD reached on this CPU."""

from __future__ import annotations

import csv
import io

import pytest

from luna_core.run import events as ev
from luna_core.run.compare import differing_options, read_history
from luna_tui.cli import main as cli_main
from tests.trainhelpers import run_dirs, run_loop


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    """A plain run and a --balanced one, 3 epochs each, in one runs dir."""
    runs = tmp_path_factory.mktemp("compare")
    base = ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--runs-dir", str(runs), "--num-workers", "0", "--batch-size", "8",
            "--device", "cpu", "--threads", "1", "--epochs", "3", "--max-batches", "2"]
    recs = []
    for extra in ([], ["--balanced", "--epoch-samples", "16"]):
        code, rec, _ = run_loop(base + extra)
        assert code == 0
        recs.append(rec)
    return runs, run_dirs(runs), recs


def _val(rec):
    return [m for m in rec.of(ev.EpochMetrics) if m.phase == "val"]


def test_histories_have_each_epoch_and_the_best_with_its_epoch(two_runs):
    _runs, dirs, recs = two_runs
    for run_dir, rec in zip(dirs, recs, strict=True):
        h = read_history(run_dir)
        vals = _val(rec)
        assert [r.epoch for r in h.epochs] == [1, 2, 3]
        assert [r.values["loss/all"] for r in h.epochs] == [m.metrics["loss/all"] for m in vals]
        losses = [m.metrics["loss/all"] for m in vals]
        best = min(range(3), key=lambda i: (losses[i], i))
        assert h.best("loss/all", False) == (best + 1, losses[best])
        recalls = [m.metrics["pr/recall"] for m in vals]
        top = max(range(3), key=lambda i: (recalls[i], -i))
        assert h.best("pr/recall", True) == (top + 1, recalls[top])
    assert differing_options([read_history(d) for d in dirs]) == ["balanced", "epoch_samples"]


def test_runs_lists_best_values_and_the_options_that_differ(two_runs, capsys):
    runs, dirs, _ = two_runs
    assert cli_main(["runs", "--runs-dir", str(runs), "--wide"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "BEST LOSS" in out[0] and "BEST RECALL" in out[0] and "BEST F1" in out[0]
    plain, balanced = out[1], out[2]
    assert "[defaults]" in plain and dirs[0] in plain      # its values are the defaults
    assert "[balanced=1 epoch_samples=16]" in balanced and dirs[1] in balanced
    h = read_history(dirs[1])
    epoch, value = h.best("loss/all", False)
    assert f"{value:.4f} E{epoch}" in balanced


def test_compare_prints_a_table_and_writes_csv(two_runs, capsys, tmp_path):
    runs, dirs, recs = two_runs
    assert cli_main(["compare", dirs[0], "latest", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"#1  {dirs[0]}" in out and f"#2  {dirs[1]}" in out
    assert "options that differ: balanced, epoch_samples" in out
    lines = out.splitlines()
    assert any(line.startswith("#2") and "options" in line and "balanced=1" in line
               for line in lines)
    epoch_rows = [line for line in lines if line.split()[:2] in (["#1", "2"], ["#2", "2"])]
    assert len(epoch_rows) == 2
    m = _val(recs[1])[1]
    assert f"{m.metrics['loss/all']:.4f}" in epoch_rows[1]

    target = tmp_path / "cmp.csv"
    assert cli_main(["compare", *dirs, "--csv", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["epoch"] for r in rows if r["run_dir"] == dirs[0]] == ["1", "2", "3", "best",
                                                                     "best_epoch"]
    assert {r["balanced"] for r in rows} == {"0", "1"}
    assert float(rows[0]["loss/all"]) == _val(recs[0])[0].metrics["loss/all"]


def test_compare_of_a_glob_leaves_out_the_tensorboard_folders_beside_the_runs(two_runs, capsys):
    import glob
    import os

    runs, dirs, _recs = two_runs
    matched = sorted(glob.glob(os.path.join(os.path.dirname(dirs[1]), "*")))
    assert any("-trn_cls-" in m for m in matched)       # the glob's TensorBoard folders
    assert cli_main(["compare", *matched]) == 0
    out = capsys.readouterr().out
    assert f"#1  {dirs[0]}" in out and f"#2  {dirs[1]}" in out and "#3" not in out


def test_compare_of_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert cli_main(["compare", str(tmp_path / "x"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "x") in err


def test_compare_latest_skips_a_run_without_a_validation_and_one_run_is_said(
        two_runs, capsys, tmp_path):
    runs, dirs, _ = two_runs
    import json
    import os
    import shutil

    runs_copy = tmp_path / "runs"
    shutil.copytree(runs, runs_copy)
    failed = runs_copy / "luna" / "2999-01-01_00.00.00-failed"   # the newest: failed at start
    failed.mkdir()
    started = ev.RunStarted(run_dir=str(failed), options={}, epochs=3, start_epoch=1,
                            trn_samples=48, val_samples=6, trn_pos=5, val_pos=1, device="cpu",
                            pid=os.getpid(), host="elsewhere", t=4e9)
    finished = ev.RunFinished(state=ev.FAILED, exit_code=1, error="boom", t=4e9 + 1)
    (failed / "events.jsonl").write_text("".join(
        json.dumps(ev.event_to_dict(e)) + "\n" for e in (started, finished)))
    assert cli_main(["compare", "latest", "--runs-dir", str(runs_copy)]) == 0
    out = capsys.readouterr().out
    newest_validated = os.path.basename(dirs[1])
    assert f"#1  {runs_copy / 'luna' / newest_validated}" in out and "failed" not in out
    assert "one run (name two or more to compare them)" in out
    assert "options are the same" not in out


@pytest.mark.parametrize("columns", [80, 120])
def test_runs_fits_the_terminal_and_wide_keeps_everything(two_runs, capsys, monkeypatch,
                                                          columns):
    runs, dirs, _ = two_runs
    monkeypatch.setenv("COLUMNS", str(columns))
    assert cli_main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    lines, paired = out.split("\n\n")[0].splitlines(), out.split("\n\n")[1].splitlines()
    assert len(lines) == 3 and all(len(line) <= columns for line in lines + paired)
    assert paired[0].startswith("paired bootstrap") and len(paired) >= 3   # wrapped, not cut
    assert "vs" in " ".join(paired) and paired[-1].rstrip().endswith(
        ("ahead", "no clear winner", "in common"))
    header = lines[0].split()
    assert header[:3] == ["STATE", "EPOCH", "VAL"] and "RUN" in header
    for line, run_dir in zip(lines[1:], dirs, strict=True):
        name = run_dir.rstrip("/").split("/")[-1]
        assert name[:19] in line             # the run's timestamp, at least
    assert cli_main(["runs", "--runs-dir", str(runs), "--wide"]) == 0
    wide = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert max(len(line) for line in wide) > columns or columns >= 120
    assert all(run_dir in line for line, run_dir in zip(wide[1:], dirs, strict=True))


def _write_run(runs, name, cpms, split=None, t0=1e9, steered=()):
    """An event file with validations whose LUNA16 score the test sets (and the optimizer
    changes ``steered``, each before its epoch's validation)."""
    import json

    run_dir = runs / "luna" / name
    (run_dir / "checkpoints").mkdir(parents=True)
    options = {"lr": 0.001} if split is None else {"lr": 0.001, "split": split}
    events = [ev.RunStarted(run_dir=str(run_dir), options=options, epochs=len(cpms),
                            start_epoch=1, trn_samples=100, val_samples=10, trn_pos=5,
                            val_pos=1, device="cpu", pid=1, host="elsewhere", t=t0)]
    for epoch, cpm in enumerate(cpms, 1):
        events += [e for e in steered if e.epoch == epoch]
        metrics = {"loss/all": 0.5 / epoch, "pr/recall": 0.1 * epoch, "correct/pos": 0.0,
                   "pr/precision": 0.1, "pr/f1_score": 0.1}
        if cpm is not None:
            metrics.update({"froc/cpm": cpm, "froc/cpm_low": cpm - 0.1,
                            "froc/cpm_high": cpm + 0.1, "froc/sens_at_1fp": cpm + 0.05})
        events.append(ev.EpochMetrics(phase="val", epoch=epoch, total_samples=100 * epoch,
                                      metrics=metrics, neg_correct=9, neg_count=9,
                                      pos_correct=0, pos_count=1, t=t0 + epoch))
    events.append(ev.RunFinished(state=ev.FINISHED, exit_code=0, t=t0 + 10))
    (run_dir / "events.jsonl").write_text("".join(json.dumps(ev.event_to_dict(e)) + "\n"
                                                  for e in events))
    return str(run_dir)


def test_runs_and_compare_show_the_best_cpm_and_sort_by_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    a = _write_run(runs, "2026-01-01_00.00.00-a", [0.3, 0.5, 0.4], t0=1e9)
    b = _write_run(runs, "2026-01-02_00.00.00-b", [0.6, 0.7], split="series", t0=2e9)
    c = _write_run(runs, "2026-01-03_00.00.00-c", [None, None], t0=3e9)
    assert cli_main(["runs", "--runs-dir", str(runs), "--wide", "--sort", "cpm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "BEST CPM [95% CI]" in out[0] and "SPLIT" in out[0]
    assert [next(d for d in (a, b, c) if d in line) for line in out[1:]] == [b, a, c]
    assert "[split=series]" in out[1] and "[defaults]" in out[2]   # best CPM first
    assert "0.700 [0.60–0.80] E2" in out[1] and "series" in out[1]
    assert "0.500 [0.40–0.60] E2" in out[2] and "candidates" in out[2]

    assert cli_main(["compare", a, b, "--runs-dir", str(runs), "--sort", "cpm"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"#1  {b}\n#2  {a}\n")
    assert "warning: the runs split validation differently (candidates / series)" in text
    assert any(line.split()[:3] == ["#1", "best", "CPM"] and "0.700 [0.60–0.80] E2" in line
               for line in text.splitlines())

    assert cli_main(["compare", a, c, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    first = rows[0]
    assert first["split"] == "candidates" and float(first["froc/cpm"]) == 0.3
    assert float(first["froc/sens_at_1fp"]) == pytest.approx(0.35)
    assert "froc/sens_at_0.125fp" in first and "froc/cpm_low" in first
    assert [r["froc/cpm"] for r in rows if r["run_dir"] == c][:2] == ["", ""]


def test_compare_shows_what_was_steered_while_a_run_ran(tmp_path, capsys):
    # issue 31, item 8: an lr changed live with ctl was nowhere in compare
    runs = tmp_path / "runs"
    changed = ev.OptimizerChanged(lr=0.0005, momentum=0.99, old_lr=0.001, old_momentum=0.99,
                                  epoch=2, batch_ndx=30, total_samples=130, source="ctl",
                                  t=1e9 + 1.5)
    a = _write_run(runs, "2026-01-01_00.00.00-a", [0.3, 0.5], steered=[changed])
    b = _write_run(runs, "2026-01-02_00.00.00-b", [0.4, 0.6], t0=2e9)
    assert cli_main(["compare", a, b]) == 0
    lines = capsys.readouterr().out.splitlines()
    steered = [ln for ln in lines if "steered" in ln]
    assert steered == ["#1   steered  lr 0.001 -> 0.0005 at E2 batch 30 (ctl)"]


def test_the_runs_filter_matches_option_values_not_their_names():
    from luna_tui.model.workspace import Row, matches

    noisy = Row("r1", "finished", "2026-12-07_04.19.49-balanced-noise", "2/2", "-", None,
                "augment_noise=25.0 balanced=1", 0.0)
    plain = Row("r2", "finished", "2026-12-07_04.20.00-plain", "2/2", "-", None,
                "defaults", 0.0)
    assert not matches(plain, "noise") and not matches(plain, "balanced")
    assert matches(noisy, "noise")                  # by its name
    assert matches(noisy, "25") and not matches(plain, "25")
    assert matches(plain, "") and matches(plain, "plain")


def test_each_validation_keeps_its_scores_and_compare_pairs_the_runs(two_runs, capsys):
    """Each validation writes its scores per candidate; the file gives back the CPM the run
    logged; `compare` pairs the runs at their best CPMs on those files."""
    import numpy as np

    from luna_core.run.compare import validation_file
    from luna_core.run.metric_catalog import CPM
    from luna_core.score import validation_file as vf
    from luna_core.score.froc import FrocScorer
    from luna_core.score.paired import paired_cpm, paired_text

    runs, dirs, recs = two_runs
    for run_dir, rec in zip(dirs, recs, strict=True):
        for m in _val(rec):
            kept = vf.read(validation_file(run_dir, m.epoch))
            assert kept.epoch == m.epoch and len(set(zip(kept.uids, map(tuple, kept.xyz)))) \
                == len(kept.uids)
            again = FrocScorer(kept.uids, kept.xyz, kept.is_nodule, kept.findings)
            assert again.score(kept.p, bootstrap=0).cpm == pytest.approx(m.metrics[CPM.key])
            labels, preds = m.per_sample
            assert np.allclose(np.sort(kept.p), np.sort(np.asarray(preds, np.float64)))
            # the same validation as a submission CSV, re-read and re-scored: the same CPM
            from luna_core.score.detection import read_submission
            from luna_core.score.validation import predictions_file

            rows = read_submission(predictions_file(run_dir, m.epoch))
            assert len(rows) == len(kept.uids)
            again = FrocScorer([d.series_uid for d in rows], [d.center_xyz for d in rows],
                               np.zeros(len(rows), bool), kept.findings)
            assert again.score([d.probability for d in rows], bootstrap=0).cpm \
                == pytest.approx(m.metrics[CPM.key])
    histories = [read_history(d) for d in dirs]
    assert cli_main(["compare", dirs[0], dirs[1], "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap, each run at its best CPM" in out
    lead = 0 if histories[0].best(CPM.key)[1] >= histories[1].best(CPM.key)[1] else 1
    a, b = (vf.read(validation_file(h.run_dir, h.best(CPM.key)[0]))
            for h in (histories[lead], histories[1 - lead]))
    want = paired_text(paired_cpm(a, b), f"#{lead + 1}", f"#{2 - lead}")
    assert "  " + want in out.splitlines()


def test_an_option_added_later_is_no_difference_against_its_old_value():
    """A run recorded before --val-every (no val_every in its options) ran with one
    validation an epoch: against a new run at --val-every 1 that is no difference."""
    from luna_core.run.compare import history_from_events

    def history(options):
        start = ev.RunStarted(run_dir="r", options=options, epochs=1, start_epoch=1,
                              trn_samples=1, val_samples=1, world_size=1, trn_pos=0,
                              val_pos=0, device="cpu", pid=1)
        return history_from_events("r", [start])

    old = history({"lr": 0.001})
    new = history({"lr": 0.001, "val_every": 1, "val_full": False, "lr_warmup": 0,
                   "task": "nodule", "split": "candidates"})
    assert differing_options([old, new]) == []
    assert differing_options([old, history({"lr": 0.001, "val_every": 5})]) == ["val_every"]
