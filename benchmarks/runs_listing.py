"""Listing a large runs folder (issue 24): 500 runs, 5 of them with 100,000-line event files
(a few hours of batch events), listed as `luna-tui runs` and the runs screen do it (each run's
state and validation history), from the runs' indexes and, for comparison, from their whole
event files (runs from before the index). Target: under ~1 s.

    .venv/bin/python benchmarks/runs_listing.py [--runs 500] [--big 5] [--lines 100000]

Simulated: event files written by the loop's own sinks (JsonlSink, IndexSink) from made-up
events: 10 epochs of validation metrics each, batch events only in the big ones; finished
runs (a live run's pid check costs the same either way). Timed warm (the files in the page
cache), the best of 3; the machine's load is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from _common import machine_info, print_footer, print_machine

from luna_core.run import events as ev
from luna_core.run.compare import history_from_events
from luna_core.run.index import INDEX_FILE, IndexSink
from luna_core.run.runs import list_runs_with_events
from luna_core.run.sinks import JsonlSink


def write_run(run_dir: str, t0: float, batches: int) -> None:
    os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
    sinks = [JsonlSink(os.path.join(run_dir, "events.jsonl"), batch_hz=0), IndexSink(run_dir)]

    def emit(e):
        for s in sinks:
            s(e)
    emit(ev.RunStarted(run_dir=run_dir, options={"lr": 0.001, "balanced": 1}, epochs=10,
                       start_epoch=1, trn_samples=495958, val_samples=55107, trn_pos=1215,
                       val_pos=136, device="cuda:0", pid=1, host="gpu-box", t=t0))
    per_epoch = batches // 10
    for epoch in range(1, 11):
        emit(ev.PhaseStarted(phase="trn", epoch=epoch, batch_count=per_epoch,
                             sample_count=32 * per_epoch, t=t0 + epoch))
        for b in range(per_epoch):
            emit(ev.BatchDone(phase="trn", epoch=epoch, batch_ndx=b, batch_count=per_epoch,
                              samples=32, total_samples=32 * b, loss=0.1, data_s=0.01,
                              compute_s=0.02, active_s=0.03 * b, t=t0 + epoch))
        emit(ev.EpochMetrics(phase="val", epoch=epoch, total_samples=epoch * 495958,
                             metrics={"loss/all": 0.1 / epoch, "correct/pos": 10.0 * epoch,
                                      "pr/recall": 0.05 * epoch, "froc/cpm": 0.06 * epoch,
                                      "froc/cpm_low": 0.05 * epoch,
                                      "froc/cpm_high": 0.07 * epoch},
                             neg_correct=1, neg_count=2, pos_correct=1, pos_count=2,
                             t=t0 + epoch + 0.5))
    emit(ev.RunFinished(state=ev.FINISHED, exit_code=0, t=t0 + 11))


def best_of(fn, rounds=3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--big", type=int, default=5)
    p.add_argument("--lines", type=int, default=100_000)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine(machine_info())
    work = tempfile.mkdtemp(prefix="luna-runs-bench-")
    runs = os.path.join(work, "runs")
    for k in range(args.runs):
        write_run(os.path.join(runs, "luna", f"2026-01-01_00.00.{k:05d}-r{k}"), 1e9 + k,
                  args.lines if k % max(1, args.runs // max(1, args.big)) == 0
                  and k // max(1, args.runs // max(1, args.big)) < args.big else 0)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(runs) for f in fs
               if f == "events.jsonl")

    def listing():
        found = list_runs_with_events(runs)
        [history_from_events(info.run_dir, events) for info, events in found]
        assert len(found) == args.runs

    indexed = best_of(listing)
    for d, _s, fs in os.walk(runs):
        if INDEX_FILE in fs:
            os.remove(os.path.join(d, INDEX_FILE))
    whole = best_of(listing)
    print(f"{args.runs} runs, {args.big} with {args.lines:,} batch lines; event files "
          f"{size / 1e6:.0f} MB in all")
    print(f"listed from the indexes:          {indexed:.3f} s")
    print(f"listed from the whole event files: {whole:.3f} s ({whole / indexed:.1f}x)")
    shutil.rmtree(work, ignore_errors=True)
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
