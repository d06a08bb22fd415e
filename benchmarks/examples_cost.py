"""What keeping a validation's examples costs the loop (issue 23): ``example_picker.save``
(pick the K worst misses, false alarms and best hits; read their chunks from the chunk store
by index; write the zip atomically) against the validation pass it follows, on the demo data,
in one run. Target: at most 2 % of the validation's time.

    .venv/bin/python benchmarks/examples_cost.py [--data-dir data-unversioned/demo] [--k 8]

The validation pass is the loop's own (``LunaTrainingApp.validate_epoch`` with its loader,
CPU, the demo's 292 validation samples); the probabilities are the model's. Both are timed
warm (the chunk store built, one pass before), medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from _common import machine_info, print_footer, print_machine


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data-unversioned/demo")
    p.add_argument("--cache-dir", default="data-unversioned/demo-cache")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=1)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine(machine_info())
    from luna_core.score import example_picker
    from luna_core.train.metrics import METRICS_LOSS_NDX, METRICS_PRED_NDX
    from luna_core.training import LunaTrainingApp

    runs = tempfile.mkdtemp(prefix="luna-examples-")
    app = LunaTrainingApp(sys_argv=["--data-dir", args.data_dir, "--cache-dir", args.cache_dir,
                                    "--runs-dir", runs, "--device", "cpu", "--num-workers",
                                    str(args.num_workers)])
    app.device = app._pick_device("cpu")
    app.trn_ds, app.val_ds = app._init_datasets()
    app.model, app.optimizer = app._init_model()
    app.val_dl = app._init_dataloader(app.val_ds, shuffle=False)
    val_s, save_s = [], []
    metrics = app.validate_epoch(1)                    # warm: workers, store, caches
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        metrics = app.validate_epoch(1)
        val_s.append(time.perf_counter() - t0)
        rows = app.val_dl.sampler.gathered_indices(metrics.shape[1])
        m = metrics.numpy()
        t0 = time.perf_counter()
        path, counts = example_picker.save(runs, 1, app.val_ds, rows, m[METRICS_PRED_NDX],
                                           m[METRICS_LOSS_NDX], args.k)
        save_s.append(time.perf_counter() - t0)
    import os

    v, s = statistics.median(val_s), statistics.median(save_s)
    print(f"validation pass: {len(app.val_ds)} samples, median {v:.2f} s over {args.rounds}")
    print(f"example_picker.save (K={args.k}: {sum(counts.values())} examples, "
          f"{os.path.getsize(path) / 1e6:.2f} MB): median {1000 * s:.1f} ms")
    print(f"cost: {100 * s / v:.2f} % of the validation's time (target <= 2 %)")
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
