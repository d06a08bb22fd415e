"""One-epoch headless runs on the tiny synthetic set: log lines, per-class counts,
TensorBoard tags read back from the event files, the JSONL event file, checkpoints.

Machine-independent by construction: formats, counts and equality between the log, the
events and TensorBoard of one run; two runs with one seed are compared on this machine."""

from __future__ import annotations

import json
import os
import re

import torch

from luna_core.run import events as ev
from luna_core.train.checkpoint import load_checkpoint
from tests.trainhelpers import run_dirs, run_loop

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:INFO|WARNING) (.*)$")


def _messages(console: str) -> list[str]:
    out = []
    for line in console.splitlines():
        m = LINE.match(line)
        assert m, f"not a plain log line: {line!r}"
        out.append(m.group(1))
    return out


def test_one_epoch_logs_counts_tensorboard_and_events(train_argv, tmp_path):
    code, rec, console = run_loop(train_argv("--epochs", "1", "my-comment"))
    assert code == 0, console
    messages = _messages(console)
    assert "\x1b" not in console and "\r" not in console

    started = rec.of(ev.RunStarted)[0]
    assert (started.trn_samples, started.val_samples) == (48, 6)
    assert (started.trn_pos, started.val_pos) == (5, 1)

    # The book's lines, with its exact layout, and counts that equal the split sizes.
    for phase, n_neg, n_pos in (("trn", 43, 5), ("val", 5, 1)):
        all_line = [m for m in messages if m.startswith(f"E1 {phase}      ")]
        neg_line = [m for m in messages if m.startswith(f"E1 {phase}_neg  ")]
        pos_line = [m for m in messages if m.startswith(f"E1 {phase}_pos  ")]
        assert len(all_line) == len(neg_line) == len(pos_line) == 1
        assert re.fullmatch(r"E1 \w+ +\d+\.\d{4} loss, +\d+\.\d% correct, \d\.\d{4} precision, "
                            r"\d\.\d{4} recall, \d\.\d{4} f1 score", all_line[0])
        assert re.fullmatch(rf"E1 {phase}_neg +\d+\.\d{{4}} loss, +\d+\.\d% correct "
                            rf"\(\d+ of {n_neg}\)", neg_line[0])
        assert re.fullmatch(rf"E1 {phase}_pos +\d+\.\d{{4}} loss, +\d+\.\d% correct "
                            rf"\(\d+ of {n_pos}\)", pos_line[0])
    # ETA lines: starting, progress at batch 4 of 6 with a clock time, done.
    assert "E1 Training ----/6, starting" in messages
    assert any(re.fullmatch(r"E1 Training 4/6, done at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, "
                            r"\d+:\d\d:\d\d", m) for m in messages)
    assert any(m.startswith("E1 Training ----/6, done at ") for m in messages)
    assert any("1 of the series listed" in m for m in messages)

    # Metrics events match the log and the counts.
    trn, val = rec.of(ev.EpochMetrics)
    assert (trn.phase, trn.neg_count, trn.pos_count) == ("trn", 43, 5)
    assert (val.phase, val.neg_count, val.pos_count) == ("val", 5, 1)
    assert trn.total_samples == 48
    batches = [e for e in rec.of(ev.BatchDone) if e.phase == "trn"]
    assert [b.batch_ndx for b in batches] == list(range(6))
    assert sum(b.samples for b in batches) == 48
    assert all(b.data_s >= 0 and b.compute_s > 0 for b in batches)

    # TensorBoard: the book's directories and tags, global_step = training samples.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = run_dirs(tmp_path / "runs")
    stamp = os.path.basename(run_dir)[: len("YYYY-mm-dd_HH.MM.SS")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d\.\d\d\.\d\d", stamp)
    for phase in ("trn", "val"):
        tb_dir = tmp_path / "runs" / "luna" / f"{stamp}-{phase}_cls-my-comment"
        acc = EventAccumulator(str(tb_dir), size_guidance={"tensors": 0, "histograms": 0})
        acc.Reload()
        scalars = set(acc.Tags()["scalars"])
        assert {"loss/all", "loss/neg", "loss/pos", "correct/all", "correct/neg",
                "correct/pos", "pr/precision", "pr/recall", "pr/f1_score"} <= scalars
        assert "pr" in acc.Tags()["tensors"]
        assert "is_neg" in acc.Tags()["histograms"] or "is_pos" in acc.Tags()["histograms"]
        (point,) = acc.Scalars("loss/all")
        assert point.step == 48
        expected = (trn if phase == "trn" else val).metrics["loss/all"]
        assert abs(point.value - expected) < 1e-4

    # The JSONL event file: versioned, one object per line, ends with run_finished.
    lines = open(os.path.join(run_dir, "events.jsonl")).read().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["v"] == 1 for r in records)
    assert records[0]["kind"] == "run_started" and records[-1]["kind"] == "run_finished"
    assert records[-1]["state"] == "finished" and records[-1]["exit_code"] == 0
    kinds = {r["kind"] for r in records}
    assert {"phase_started", "batch_done", "epoch_metrics", "checkpoint", "log"} <= kinds
    restored = ev.event_from_dict(next(r for r in records if r["kind"] == "epoch_metrics"))
    assert restored.metrics == trn.metrics

    # An end-of-epoch checkpoint that loads with weights_only=True, plus best.pt.
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    assert sorted(os.listdir(ckpt_dir)) == ["best.pt", "e001-end.pt"]
    state = load_checkpoint(os.path.join(ckpt_dir, "e001-end.pt"))
    assert state["epoch"] == 1 and state["epoch_done"] and state["total_samples"] == 48
    raw = torch.load(os.path.join(ckpt_dir, "e001-end.pt"), weights_only=True)
    assert set(raw) >= {"model", "optimizer", "epoch", "batch_ndx", "total_samples", "rng",
                        "options", "format_version"}
    assert any("momentum_buffer" in s for s in raw["optimizer"]["state"].values())


def test_same_seed_same_run_and_shuffle_differs_by_epoch(train_argv, tmp_path):
    from luna_core.training import EpochSampler

    sampler = EpochSampler(48, seed=0)
    sampler.set_epoch(1)
    first = sampler.order()
    sampler.set_epoch(2)
    assert sampler.order() != first and sorted(first) == list(range(48))
    sampler.set_epoch(1, start=16)
    assert list(sampler) == first[16:]

    argv = train_argv("--epochs", "1", "--max-batches", "2")
    _, rec_a, _ = run_loop(argv)
    _, rec_b, _ = run_loop(argv)
    loss_a = [b.loss for b in rec_a.of(ev.BatchDone)]
    loss_b = [b.loss for b in rec_b.of(ev.BatchDone)]
    assert loss_a == loss_b and len(loss_a) == 3  # 2 training + 1 validation batch


def test_bad_data_dir_fails_with_one_line_and_writes_no_run(train_argv, tmp_path):
    bad = tmp_path / "empty"
    bad.mkdir()
    argv = train_argv("--epochs", "1")
    argv[argv.index("--data-dir") + 1] = str(bad)
    code, rec, console = run_loop(argv)
    assert code == 2
    (finished,) = rec.of(ev.RunFinished)
    assert finished.state == ev.FAILED and "annotations.csv" in finished.error
    assert not (tmp_path / "runs").exists()
