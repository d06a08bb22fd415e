"""`luna-tui analyze` over the tiny set with three real (briefly trained) runs: its outputs,
the book's table adding up to the validation nodules, going on after a kill, and the runs it
refuses. Machine-independent: files, counts and sums, not what the models learnt."""

from __future__ import annotations

import json
import os

import pytest

from luna_core.score.detection import read_submission
from luna_tui.cli import main as cli_main
from tests.trainhelpers import run_dirs, run_loop


@pytest.fixture(scope="module")
def three_runs(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    base = ["--data-dir", tiny_data["data_dir"], "--cache-dir", tiny_data["cache_dir"],
            "--device", "cpu", "--threads", "1", "--num-workers", "0", "--val-stride", "2",
            "--epochs", "1", "--max-batches", "1", "--batch-size", "4"]
    runs = {}
    for name, extra in (("cls", ["--split", "series"]),
                        ("seg", ["--task", "seg", "--epoch-samples", "4"]),
                        ("book", [])):                        # split by candidates
        code, _rec, console = run_loop([*base, "--runs-dir", str(root / name), *extra])
        assert code == 0, console
        (runs[name],) = run_dirs(root / name)
    code, _rec, console = run_loop([*base, "--runs-dir", str(root / "mal"), "--task",
                                    "malignancy", "--finetune", runs["cls"],
                                    "--epoch-samples", "4"])
    assert code == 0, console
    (runs["mal"],) = run_dirs(root / "mal")
    return root, runs


def _analyze(tiny_data, runs, out, *extra):
    return cli_main(["analyze", "--data-dir", tiny_data["data_dir"], "--seg", runs["seg"],
                     "--cls", runs["cls"], "--out", str(out), *extra])


def test_analyze_writes_detections_scores_and_the_books_table(tiny_data, three_runs,
                                                              tmp_path, capsys):
    from luna_core.data.csvread import read_malignancy
    from luna_core.data.segdsets import split_series

    _root, runs = three_runs
    out = tmp_path / "out"
    assert _analyze(tiny_data, runs, out, "--mal", runs["mal"]) == 0
    said = capsys.readouterr().out
    val = split_series(tiny_data["data_dir"], 2)[1]
    assert said.count("series ") >= len(val) and "detection CPM" in said
    rows = read_submission(str(out / "detections.csv"))
    assert {d.series_uid for d in rows} <= set(val)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series"] == len(val) and summary["detections"] == len(rows)
    graded = read_malignancy(os.path.join(tiny_data["data_dir"],
                                          "annotations_with_malignancy.csv"))
    benign = sum(1 for u in val for r in graded.get(u, []) if not r[4])
    malignant = sum(1 for u in val for r in graded.get(u, []) if r[4])
    table = summary["table"]
    assert [sum(table[1]), sum(table[2])] == [benign, malignant]
    assert summary["detection"]["nodules"] == benign + malignant   # misses counted
    assert "complete miss" in said and "predicted malignant" in said
    for uid in val:
        assert (out / "series" / f"{uid}.json").exists()


def test_a_killed_analysis_goes_on_with_the_series_it_had_not_finished(tiny_data, three_runs,
                                                                     tmp_path, capsys):
    _root, runs = three_runs
    out = tmp_path / "out"
    assert _analyze(tiny_data, runs, out) == 0
    first = json.loads((out / "summary.json").read_text())
    done = sorted(os.listdir(out / "series"))
    os.remove(out / "series" / done[-1])            # as if killed before the last series
    os.remove(out / "summary.json")
    capsys.readouterr()
    assert _analyze(tiny_data, runs, out) == 0
    said = capsys.readouterr().out
    assert said.count(": done before") == len(done) - 1
    assert json.loads((out / "summary.json").read_text()) == first


def test_the_runs_it_refuses(tiny_data, three_runs, tmp_path, capsys):
    _root, runs = three_runs
    wrong = {**runs, "cls": runs["seg"]}
    assert _analyze(tiny_data, wrong, tmp_path / "a") == 2
    assert "--cls needs a --task nodule run" in capsys.readouterr().err
    book = {**runs, "cls": runs["book"]}
    assert _analyze(tiny_data, book, tmp_path / "b") == 2
    assert "split by candidates" in capsys.readouterr().err
    assert _analyze(tiny_data, book, tmp_path / "c", "--series", "all") == 0


def test_a_damaged_series_result_is_analysed_again_and_a_bad_out_is_one_line(
        tiny_data, three_runs, tmp_path, capsys):
    _root, runs = three_runs
    out = tmp_path / "out"
    assert _analyze(tiny_data, runs, out) == 0
    first = json.loads((out / "summary.json").read_text())
    name = sorted(os.listdir(out / "series"))[0]
    text = (out / "series" / name).read_text()
    (out / "series" / name).write_text(text[: len(text) // 2])       # cut short
    capsys.readouterr()
    assert _analyze(tiny_data, runs, out) == 0
    assert json.loads((out / "summary.json").read_text()) == first
    assert json.loads((out / "series" / name).read_text())          # whole again
    (tmp_path / "file").write_text("x")
    assert _analyze(tiny_data, runs, tmp_path / "file") == 2
    err = capsys.readouterr().err
    assert "cannot write the analysis here" in err and len(err.strip().splitlines()) == 1


def test_results_of_other_models_are_not_mixed_in(tiny_data, three_runs, tmp_path, capsys):
    """The same --out with another --cls: every series is analysed again, not kept."""
    _root, runs = three_runs
    out = tmp_path / "out"
    assert _analyze(tiny_data, runs, out) == 0
    capsys.readouterr()
    assert _analyze(tiny_data, {**runs, "cls": runs["book"]}, out, "--series", "all") == 0
    assert ": done before" not in capsys.readouterr().out
    assert _analyze(tiny_data, runs, out, "--series", "all") == 0
    assert ": done before" not in capsys.readouterr().out
