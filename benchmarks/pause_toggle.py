"""Pause/resume toggled 1,000 times (issue 28, item 12): what the run's index costs the loop.

Each pause and resume is a status event, and the run's index (RUN_DIR/index.json) keeps every
status event. Before issue 28 the index was rewritten and fsynced on every one of them (1,000
pairs stalled the loop about 20 s); now it is written at most every 0.5 s (a timer writes
what came since). Both are measured here in one run: the same IndexSink with
``min_interval=0`` (a write per event: the old rule) and with its default.

    .venv/bin/python benchmarks/pause_toggle.py [--pairs 1000] [--epochs 10]

Simulated: the events of a run at epoch ``--epochs`` (start, a validation an epoch), then
the toggles, sent straight to the run's event-file and index sinks, as the loop's bus does;
on this machine's disk (fsync included). Wall time of sending the toggles, and the index
writes.
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
from luna_core.run import index as index_module
from luna_core.run.index import IndexSink
from luna_core.run.sinks import JsonlSink


def history(run_dir: str, epochs: int) -> list[ev.Event]:
    events: list[ev.Event] = [ev.RunStarted(
        run_dir=run_dir, options={"lr": 0.001}, epochs=epochs + 5, start_epoch=1,
        trn_samples=495958, val_samples=55107, trn_pos=1215, val_pos=136, device="cuda:0",
        pid=os.getpid())]
    for epoch in range(1, epochs + 1):
        events.append(ev.EpochMetrics(
            phase="val", epoch=epoch, total_samples=epoch * 200_000,
            metrics={"loss/all": 0.1, "correct/pos": 50.0, "froc/cpm": 0.5},
            neg_correct=50_000, neg_count=55_000, pos_correct=60, pos_count=136))
    return events


def toggle(run_dir: str, pairs: int, epochs: int, min_interval: float) -> tuple[float, int]:
    os.makedirs(run_dir)
    writes = 0
    real = index_module.atomic_write

    def counting(*args, **kwargs):
        nonlocal writes
        writes += 1
        return real(*args, **kwargs)

    index_module.atomic_write = counting
    try:
        sinks = [JsonlSink(os.path.join(run_dir, "events.jsonl")),
                 IndexSink(run_dir, min_interval=min_interval)]
        for event in history(run_dir, epochs):
            for sink in sinks:
                sink(event)
        writes = 0
        t0 = time.perf_counter()
        for _ in range(pairs):
            for state in (ev.PAUSED, ev.TRAINING):
                event = ev.StatusChanged(state=state)
                for sink in sinks:
                    sink(event)
        seconds = time.perf_counter() - t0
        for sink in sinks:
            sink.close()
    finally:
        index_module.atomic_write = real
    return seconds, writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    t_start = time.perf_counter()
    print_machine(machine_info())
    work = tempfile.mkdtemp(prefix="pause-toggle-")
    try:
        old_s, old_w = toggle(os.path.join(work, "old"), args.pairs, args.epochs, 0.0)
        new_s, new_w = toggle(os.path.join(work, "new"), args.pairs, args.epochs, 0.5)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.pairs} pause/resume pairs at epoch {args.epochs}:")
    print(f"  index per event (before): {old_s:7.2f} s, {old_w} index writes")
    print(f"  index batched (now):      {new_s:7.2f} s, {new_w} index writes "
          f"({old_s / max(new_s, 1e-9):.0f}x faster)")
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
