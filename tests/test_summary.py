"""The summary at a run's end (luna_core.run.summary): exact lines from events the test makes,
and the same lines at the end of a headless run and from `luna-tui runs RUN`.

Machine-independent by construction: the rule gets made-up events; the headless test compares
the run's closing lines with what `runs RUN` says of the same event file."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from luna_core.run import events as ev
from luna_core.run.summary import summarise
from luna_tui.cli import main as cli_main


def _metrics(epoch, loss, recall, precision, f1, t):
    return ev.EpochMetrics(phase="val", epoch=epoch, total_samples=100 * epoch, t=t,
                           metrics={"loss/all": loss, "pr/recall": recall,
                                    "pr/precision": precision, "pr/f1_score": f1},
                           neg_correct=0, neg_count=9, pos_correct=0, pos_count=1)


def test_the_best_epoch_by_cpm_comes_first_with_its_interval(tmp_path):
    run = str(tmp_path / "run")
    events = [ev.RunStarted(run_dir=run, options={}, epochs=2, start_epoch=1, trn_samples=8,
                            val_samples=2, trn_pos=1, val_pos=1, device="cpu", pid=1, host="h",
                            t=0.0)]
    for epoch, cpm, loss in ((1, 0.62, 0.3), (2, 0.55, 0.2)):
        m = _metrics(epoch, loss, 0.5, 0.1, 0.2, float(epoch))
        m.metrics.update({"froc/cpm": cpm, "froc/cpm_low": cpm - 0.05,
                          "froc/cpm_high": cpm + 0.04})
        events.append(m)
    lines = summarise(run, events).lines()
    assert lines[1] == ("  best epoch: CPM 0.620 [0.57–0.66] at E1; validation loss 0.2000 at "
                        "E2; F1 0.200 at E1")
    assert lines[2].startswith("  last validation (E2): CPM 0.550 (best 0.620 at E1), recall")


def test_the_summary_gives_the_verdict_against_chance_and_the_trend(tmp_path):
    run = str(tmp_path / "run")
    events = [ev.RunStarted(run_dir=run, options={}, epochs=3, start_epoch=1, trn_samples=8,
                            val_samples=2, trn_pos=1, val_pos=1, device="cpu", pid=1, host="h",
                            t=0.0)]
    for epoch, cpm, auc in ((1, 0.05, (0.52, 0.41, 0.63)), (2, 0.10, (0.60, 0.51, 0.70)),
                            (3, 0.20, (0.70, 0.62, 0.79))):
        m = _metrics(epoch, 0.3, 0.5, 0.1, 0.2, float(epoch))
        m.metrics.update({"froc/cpm": cpm, "roc/auc": auc[0], "roc/auc_low": auc[1],
                          "roc/auc_high": auc[2]})
        events.append(m)
    lines = summarise(run, events).lines()
    assert ("  verdict: AUC 0.70 [0.62–0.79]: better than chance; CPM rising 2 validations "
            "in a row (its best)") in lines
    events[-1].metrics.update({"roc/auc_low": 0.45})
    assert any(line.startswith("  verdict: AUC 0.70 [0.45–0.79]: no better than chance")
               for line in summarise(run, events).lines())


def _batch(phase, ndx, active_s, t, data_s=0.03, compute_s=0.01):
    return ev.BatchDone(phase=phase, epoch=1, batch_ndx=ndx, batch_count=10, samples=8,
                        total_samples=8 * ndx, loss=0.5, data_s=data_s, compute_s=compute_s,
                        active_s=active_s, t=t)


def test_the_summary_says_where_the_time_went_the_best_epochs_and_what_next(tmp_path):
    run = str(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "best.pt").write_bytes(b"x")
    events = [
        ev.RunStarted(run_dir=run, options={}, epochs=3, start_epoch=1, trn_samples=80,
                      val_samples=20, trn_pos=2, val_pos=1, device="cpu", pid=1, host="h",
                      t=1000.0),
        ev.PhaseStarted(phase="trn", epoch=1, batch_count=10, sample_count=80, t=1000.0),
        _batch("trn", 0, 10.0, 1010.0),           # 3/4 of each batch waits for data
        ev.StatusChanged(state=ev.PAUSED, t=1011.0),
        ev.StatusChanged(state=ev.TRAINING, t=1071.0),      # paused 60 s
        _batch("trn", 9, 100.0, 1160.0),          # (thinned: batches 1-8 not in the file)
        ev.PhaseStarted(phase="val", epoch=1, batch_count=2, sample_count=20, t=1160.0),
        _batch("val", 1, 20.0, 1180.0, data_s=0.0),
        _metrics(1, 0.50, 0.5, 0.10, 0.167, 1180.0),
        ev.CheckpointSaved(path=str(ckpt / "e001-end.pt"), reason="epoch", epoch=1,
                           batch_ndx=10, total_samples=100, t=1181.0),
        _metrics(2, 0.40, 1.0, 0.05, 0.095, 1300.0),
        ev.CheckpointSaved(path=str(ckpt / "e002-end.pt"), reason="epoch", epoch=2,
                           batch_ndx=10, total_samples=200, t=1301.0),
        ev.RunFinished(state=ev.STOPPED, exit_code=0, last_checkpoint=str(ckpt / "e002-end.pt"),
                       t=1400.0),
    ]
    lines = summarise(run, events).lines(previous_run="runs/luna/earlier")
    assert lines == [
        "run stopped after 6m 40s: training 1m 40s, validation 20s, waiting for data 1m 15s, "
        "paused 1m 00s (2 of 3 epochs)",
        "  best epoch: validation loss 0.4000 at E2; F1 0.167 at E1",
        "  last validation (E2): recall 1.000 (best 1.000 at E2), precision 0.050 (best 0.100 "
        "at E1), F1 0.095 (best 0.167 at E1)",
        f"  best weights: {ckpt / 'best.pt'}",
        f"  go on with: luna-tui --headless --resume {run}",
        f"  compare with the run before: luna-tui compare runs/luna/earlier {run}",
    ]
    # a run told to beat a --baseline is compared with that one (issue 31, item 8)
    best = tmp_path / "the-best"
    best.mkdir()
    events[0] = dataclasses.replace(events[0], options={"baseline": str(best)})
    lines = summarise(run, events).lines(previous_run="runs/luna/earlier")
    assert lines[-1] == f"  compare with its --baseline: luna-tui compare {best} {run}"


def test_a_run_without_a_validation_says_so_and_why_it_ended(tmp_path):
    run = str(tmp_path / "run")
    events = [ev.RunStarted(run_dir=run, options={}, epochs=3, start_epoch=1, trn_samples=8,
                            val_samples=2, trn_pos=1, val_pos=1, device="cpu", pid=1, host="h",
                            t=0.0),
              ev.RunFinished(state=ev.FAILED, exit_code=1, error="CUDA error at x.py:3",
                             t=5.0)]
    assert summarise(run, events).lines() == [
        "run failed after 5s: training 0s, validation 0s, waiting for data 0s, paused 0s "
        "(0 of 3 epochs)",
        "  why: CUDA error at x.py:3",
        "  no validation finished: no best epoch",
    ]


def test_a_headless_run_ends_with_the_summary_runs_run_shows(train_argv, tmp_path, capsys):
    argv = train_argv("--epochs", "2", "--max-batches", "2")
    for _ in range(2):                        # a second run: it names the first to compare
        result = subprocess.run([sys.executable, "-m", "luna_tui", "--headless", *argv],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    closing = result.stderr.splitlines()
    assert cli_main(["runs", "latest", "--runs-dir", str(tmp_path / "runs")]) == 0
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 7 and closing[-7:] == said
    assert said[3].startswith("  verdict: AUC ")        # its values are where SGD went
    assert said[0].startswith("run finished after ") and said[0].endswith("(2 of 2 epochs)")
    assert said[-1].startswith("  compare with the run before: luna-tui compare ")


def test_runs_of_a_live_run_says_it_runs_and_how_to_watch_it(tmp_path, capsys):
    import json
    import os
    import time

    from luna_core.run.runs import this_host

    run = tmp_path / "runs" / "luna" / "2026-12-07_10.00.00-live"
    run.mkdir(parents=True)
    now = time.time()
    events = [ev.RunStarted(run_dir=str(run), options={}, epochs=3, start_epoch=1,
                            trn_samples=8, val_samples=2, trn_pos=1, val_pos=1, device="cpu",
                            pid=os.getpid(), host=this_host(), t=now),       # this process
              ev.StatusChanged(state=ev.TRAINING, t=now + 90.0),
              ev.CheckpointSaved(path=str(run / "checkpoints" / "e001-end.pt"), epoch=1,
                                 batch_ndx=0, reason="epoch", total_samples=8,
                                 t=now + 95.0)]
    (run / "events.jsonl").write_text(
        "".join(json.dumps(ev.event_to_dict(e)) + "\n" for e in events))
    assert cli_main(["runs", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run still running after 1m 35s: ")
    assert out[-1] == f"  watch it: luna-tui attach {run}"
    assert not any("--resume" in line for line in out)


def test_the_baseline_line_names_a_run_folder_never_latest(tmp_path):
    run, base = tmp_path / "run", tmp_path / "base"
    run.mkdir()
    base.mkdir()

    def last_line(baseline):
        started = ev.RunStarted(run_dir=str(run), options={"baseline": baseline}, epochs=1,
                                start_epoch=1, trn_samples=8, val_samples=2, trn_pos=1,
                                val_pos=1, device="cpu", pid=1, host="h", t=1.0)
        return summarise(str(run), [started]).lines(previous_run="runs/luna/earlier")[-1]
    assert last_line(str(base)) == f"  compare with its --baseline: luna-tui compare {base} {run}"
    # 'latest' would be this run by the time the line is read: the run before instead
    assert last_line("latest").startswith("  compare with the run before:")
    assert last_line(str(run)).startswith("  compare with the run before:")
