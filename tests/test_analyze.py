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


def _timeless(summary: dict) -> dict:
    """A summary without each series' seconds (a series analysed again takes its own)."""
    return {**summary, "per_series": [{k: v for k, v in r.items() if k != "seconds"}
                                      for r in summary.get("per_series", [])]}


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
    per = summary["per_series"]
    assert sorted(r["series_uid"] for r in per) == sorted(val)
    assert sum(r["nodules"] for r in per) == benign + malignant
    assert all(r["found"] + r["missed"] == r["nodules"] and r["seconds"] > 0 for r in per)
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
    assert _timeless(json.loads((out / "summary.json").read_text())) == _timeless(first)


def test_the_runs_it_refuses(tiny_data, three_runs, tmp_path, capsys):
    _root, runs = three_runs
    wrong = {**runs, "cls": runs["seg"]}
    assert _analyze(tiny_data, wrong, tmp_path / "a") == 2
    assert "--cls needs a --task nodule run" in capsys.readouterr().err
    book = {**runs, "cls": runs["book"]}
    assert _analyze(tiny_data, book, tmp_path / "b") == 2
    assert "split by candidates" in capsys.readouterr().err
    assert _analyze(tiny_data, book, tmp_path / "c", "--series", "all") == 0
    assert "warning: the --cls model trained on" in capsys.readouterr().out   # every series
    assert _analyze(tiny_data, runs, tmp_path / "d", "--series", "1.2.3.404") == 2
    assert "series 1.2.3.404 not found" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()                  # nothing half-made


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
    assert _timeless(json.loads((out / "summary.json").read_text())) == _timeless(first)
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


def test_with_models_the_test_sets_every_nodule_is_found_and_graded(tiny_data, three_runs,
                                                                    tmp_path, monkeypatch):
    """The segmentation calls a small block at each annotated nodule's centre (nothing else),
    the classifier passes everything, the grader calls everything malignant: every nodule is
    found once at its centre, so the detection CPM is 1 and each nodule row of the book's
    table is all "predicted malignant"."""
    import numpy as np

    from luna_core import analysis
    from luna_core.data.csvread import read_malignancy
    from luna_core.data.segdsets import split_series
    from luna_core.score import pipeline

    graded = read_malignancy(os.path.join(tiny_data["data_dir"],
                                          "annotations_with_malignancy.csv"))
    real = pipeline.analyze_ct

    def set_models(ct, segment, classify, grade=None, lungs=True, **kw):
        called = np.zeros(ct.hu_a.shape, np.float32)
        for x, y, z, *_rest in graded.get(ct.series_uid, []):
            i, r, c = (int(round(v)) for v in ct.xyz2irc((x, y, z)))
            called[max(i - 1, 0):i + 2, max(r - 3, 0):r + 4, max(c - 3, 0):c + 4] = 0.9
        box = pipeline.lungs_of(ct)
        slices = iter(range(box.index.start, box.index.stop))

        def seg(batch):
            ks = [next(slices) for _ in batch]
            return called[ks][:, None, box.row, box.col]

        return real(ct, seg, lambda chunks: np.full(len(chunks), 0.9),
                    lambda chunks: np.full(len(chunks), 0.8), lungs=lungs, **kw)

    monkeypatch.setattr(analysis, "analyze_ct", set_models)
    _root, runs = three_runs
    out = tmp_path / "out"
    assert _analyze(tiny_data, runs, out, "--mal", runs["mal"]) == 0
    val = split_series(tiny_data["data_dir"], 2)[1]
    nodules = [(u, r) for u in val for r in graded.get(u, [])]
    benign = sum(1 for _u, r in nodules if not r[4])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detection"]["cpm"] == 1.0 and summary["detection"]["nodules"] == len(nodules)
    assert summary["table"] == [[0, 0, 0, 0], [0, 0, 0, benign],
                                [0, 0, 0, len(nodules) - benign]]
    per = {r["series_uid"]: r for r in summary["per_series"]}
    assert set(per) == set(val)
    for uid in val:
        count = sum(1 for u, _r in nodules if u == uid)
        assert (per[uid]["nodules"], per[uid]["found"], per[uid]["missed"],
                per[uid]["false_positives"]) == (count, count, 0, 0)
    found = read_submission(str(out / "detections.csv"))
    assert len(found) == len(nodules)
    for d in found:                              # each at its nodule's centre
        assert min(max(abs(a - b) for a, b in zip(d.center_xyz, r[:3]))
                   for u, r in nodules if u == d.series_uid) < 3.0     # mm


def test_the_candidate_lists_chunks_keep_its_order(tiny_data):
    """The candidate list is scored in its own order, each series read once: candidates of
    two series taken turn about get each its own chunk (a grouping by series once paired
    one candidate's probability with another's)."""
    import numpy as np

    from luna_core.analysis import _candidate_chunks
    from luna_core.data.candidates import candidate_tuple
    from luna_core.data.ct import Ct

    listed = candidate_tuple(tiny_data["data_dir"])
    first, second = sorted({c.series_uid for c in listed})[:2]
    a = [c for c in listed if c.series_uid == first][:3]
    b = [c for c in listed if c.series_uid == second][:3]
    turns = [c for pair in zip(a, b, strict=True) for c in pair]
    chunks = _candidate_chunks(tiny_data["data_dir"], turns)
    for k, c in enumerate(turns):
        own, _irc = Ct.load(c.series_uid, tiny_data["data_dir"]).get_raw_candidate(c.center_xyz)
        assert np.array_equal(chunks[k, 0], own), k
