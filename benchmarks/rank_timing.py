"""The cost of every rank's timings (issue 34): training samples/s of a two-process torchrun
(gloo, CPU) with the timings on (``--rank-timings 10``, the default) and off (0), in
interleaved trials, on a synthetic data set; target: at most 1 % slower with them.

    .venv/bin/python benchmarks/rank_timing.py [--trials 3] [--batches 150] [--json FILE]

Each trial is one epoch of ``--batches`` training batches per rank (batch 8); samples/s is
the epoch's training samples over its active time, read from the run's event file. The
data set is a small synthetic one written once in ``--work``. On a GPU the same comparison
holds with ``--device cuda`` (no per-batch device sync: the marks are CUDA events, read once
a window after one wait for its last event).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import machine_info, print_machine, write_json  # noqa: E402

from luna_core.run import events as ev  # noqa: E402
from luna_core.run.eventfile import read_events  # noqa: E402


def trial(data_dir: str, cache_dir: str, every: int, batches: int, device: str) -> float:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "luna_tui", "--headless", "--data-dir", data_dir,
               "--cache-dir", cache_dir, "--runs-dir", runs, "--epochs", "1",
               "--epoch-samples", str(batches * 2 * 8), "--batch-size", "8",
               "--num-workers", "0", "--threads", "1", "--val-stride", "5", "--device", device,
               "--rank-timings", str(every), "--froc-bootstrap", "0", "--examples", "0",
               # the demo's optimizer: the book's SGD at momentum 0.99 goes non-finite on
               # this small set within 50 batches
               "--optimizer", "adam", "--momentum", "0.9", "--lr-warmup", "2000",
               "--on-nonfinite", "skip"]
        env = {k: v for k, v in os.environ.items() if k != "LUNA_TEST_SLOW_DATA"}
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=1200)
        (events_path,) = [p for p in glob.glob(os.path.join(runs, "luna", "*", "events.jsonl"))]
        events = read_events(events_path)
        last = [e for e in events if isinstance(e, ev.BatchDone) and e.phase == "trn"][-1]
        timings = [e for e in events if isinstance(e, ev.RankTimings)]
        assert bool(timings) == (every > 0), "timings when off, or none when on"
        return last.total_samples / last.active_s


def marks_cost(batches: int = 20000) -> float:
    """Microseconds a batch's marks cost on the CPU (got_batch, the five marks, batch_done),
    in this process, the timer switched on by hand (the gather is timed by the trials)."""
    import time

    import torch

    from luna_core.train.distributed import DistContext
    from luna_core.train.rank_timing import MARKS, RankTimer

    timer = RankTimer(DistContext(), torch.device("cpu"))
    timer.enabled = True
    t0 = time.perf_counter()
    for _ in range(batches):
        timer.got_batch(0.001)
        for part in MARKS:
            timer.mark(part)
        timer.batch_done(8)
    return (time.perf_counter() - t0) / batches * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work", default="data-unversioned/bench-ranks")
    p.add_argument("--json", default=None)
    p.add_argument("--marks-only", action="store_true",
                   help="only the marks' cost per batch, in this process")
    args = p.parse_args()
    info = machine_info()
    print_machine(info)
    cost_us = marks_cost()
    print(f"the marks of one batch: {cost_us:.1f} µs on this CPU")
    if args.marks_only:
        return 0
    data_dir, cache_dir = os.path.join(args.work, "luna"), os.path.join(args.work, "cache")
    if not os.path.exists(os.path.join(data_dir, "candidates.csv")):
        from luna_core.data.synth import write_synthetic_dataset

        write_synthetic_dataset(data_dir, 8, 0)
    trial(data_dir, cache_dir, 10, 20, args.device)           # the cache, warm
    on, off = [], []
    for k in range(args.trials):
        for every, out in ((10, on), (0, off)) if k % 2 == 0 else ((0, off), (10, on)):
            out.append(trial(data_dir, cache_dir, every, args.batches, args.device))
            print(f"trial {k + 1}: timings {'on ' if every else 'off'} "
                  f"{out[-1]:7.1f} samples/s", flush=True)
    m_on, m_off = statistics.median(on), statistics.median(off)
    cost = 100.0 * (m_off - m_on) / m_off
    print(f"\nmedian samples/s: on {m_on:.1f}, off {m_off:.1f}: the timings cost {cost:+.2f} % "
          f"(target ≤ 1 %: {'met' if cost <= 1.0 else 'NOT met'})")
    per_batch = 2 * 8 / m_off
    print(f"a batch takes {1000 * per_batch:.0f} ms here: the marks are "
          f"{100 * cost_us * 1e-6 / per_batch:.3f} % of it")
    write_json(args.json, {"machine": info, "on": on, "off": off, "cost_percent": cost,
                           "marks_us": cost_us})
    return 0


if __name__ == "__main__":
    sys.exit(main())
