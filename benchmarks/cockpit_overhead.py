"""Cockpit cost: training samples/s under the cockpit ÷ samples/s headless, same data, same run.

Both arms run the real LunaTrainingApp on the same synthetic set for the same batches. The
cockpit arm runs the Textual app in headless mode (it renders every frame exactly as on a
terminal, without writing to one), polling its snapshot at the app's normal rate, with the
trainer in its thread worker. Arms alternate (H C H C ...) so that drift in the machine's speed
hits both; samples/s come from the loop's own BatchDone events (warm-up batches excluded).
Target: ratio >= 0.98.

    .venv/bin/python benchmarks/cockpit_overhead.py [--rounds 3] [--batches 40] [--view 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luna_core.run import events as ev  # noqa: E402


class BatchRate:
    """A sink measuring training samples/s from BatchDone events after warm-up."""

    def __init__(self, warmup: int = 3, epoch: int = 1) -> None:
        self.warmup, self.epoch = warmup, epoch
        self.batches: list[ev.BatchDone] = []

    def __call__(self, event) -> None:
        if isinstance(event, ev.BatchDone) and event.phase == "trn" \
                and event.epoch == self.epoch:
            self.batches.append(event)

    def samples_per_s(self) -> float:
        if len(self.batches) <= self.warmup:
            raise SystemExit(f"the run produced only {len(self.batches)} training batches")
        first, rest = self.batches[self.warmup - 1], self.batches[self.warmup:]
        return sum(b.samples for b in rest) / (rest[-1].active_s - first.active_s)


def headless_arm(argv: list[str], epoch: int = 1) -> float:
    from luna_core.training import LunaTrainingApp

    rate = BatchRate(epoch=epoch)
    with open(os.devnull, "w") as devnull:
        from luna_core.run.sinks import ConsoleSink

        code = LunaTrainingApp(sys_argv=argv, sinks=[rate, ConsoleSink(devnull)]).main()
    assert code == 0, code
    return rate.samples_per_s()


def cockpit_arm(argv: list[str], epoch: int = 1, view: str | None = None) -> float:
    """The cockpit as build_cockpit makes it, plus the rate meter as a second sink; ``view``:
    the key of the view to keep open (6: the examples, drawn in half-blocks)."""
    from luna_core.run.command_table import CommandChannel
    from luna_core.training import LunaTrainingApp
    from luna_tui.app import CockpitApp
    from luna_tui.link.local import LocalLink
    from luna_tui.model.collector import EventCollector
    from luna_tui.terminal import prepare_worker_processes

    prepare_worker_processes()  # as run_cockpit does before the app takes the terminal

    from luna_tui.images import image_widget

    rate = BatchRate(epoch=epoch)
    collector, channel = EventCollector(), CommandChannel()

    def train() -> int:
        return LunaTrainingApp(sys_argv=argv, sinks=[collector, rate], commands=channel,
                               interactive=True).main()

    app = CockpitApp(LocalLink(collector, channel, runner=train),
                     image_class=image_widget("halfblock"))

    async def drive() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            if view:
                await pilot.press(view)
            while collector.snapshot().finished is None:
                await pilot.pause(0.2)
            await pilot.press("q")

    asyncio.run(drive())
    return rate.samples_per_s()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", default=None)
    parser.add_argument("--view", default=None, metavar="KEY",
                        help="keep this view open in the cockpit arm (e.g. 6, the examples: "
                             "the runs train 2 epochs and epoch 2 is measured, with epoch 1's "
                             "examples on screen)")
    args = parser.parse_args(argv)
    epochs = 2 if args.view else 1

    from luna_core.data.synth import write_synthetic_dataset

    work = args.work or tempfile.mkdtemp(prefix="luna-cockpit-bench-")
    data_dir = os.path.join(work, "luna")
    if not os.path.exists(os.path.join(data_dir, "candidates.csv")):
        write_synthetic_dataset(data_dir, series=6, seed=0, size_xy=128, slices=(40, 56),
                                negatives_per_series=150)
    train_argv = ["--data-dir", data_dir, "--cache-dir", os.path.join(work, "cache"),
                  "--runs-dir", os.path.join(work, "runs"), "--num-workers", str(args.workers),
                  "--batch-size", str(args.batch_size), "--device", "cpu", "--epochs",
                  str(epochs), "--max-batches", str(args.batches)]
    headless_arm(train_argv + ["--max-batches", "4"])  # warm the CT cache and the imports

    headless, cockpit = [], []
    for _ in range(args.rounds):
        headless.append(headless_arm(train_argv, epochs))
        cockpit.append(cockpit_arm(train_argv, epochs, args.view))
        print(f"headless {headless[-1]:.2f} samples/s   cockpit {cockpit[-1]:.2f} samples/s",
              flush=True)
    h, c = statistics.median(headless), statistics.median(cockpit)
    print(f"median: headless {h:.2f}, cockpit {c:.2f} samples/s; "
          f"ratio cockpit/headless = {c / h:.3f} (target >= 0.98)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
