"""Which way of running the book's model is fastest on this CPU (issue 30): training and
validation samples/s of LunaModel on random chunks, for NCDHW vs channels-last-3d memory,
fp32 vs bf16 autocast, and torch.compile, at the demo's batch size, in one process, arms
alternated over rounds (ratios within one run, as the other benchmarks).

    .venv/bin/python benchmarks/cpu_train_modes.py [--batch-size 16] [--rounds 3] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from _common import machine_info, print_footer, print_machine

from luna_core.train.model import LunaModel


def make_arm(channels_last: bool, bf16: bool, compiled: bool, batch: int):
    torch.manual_seed(0)
    model = LunaModel()
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 32, 48, 48).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))

    def train_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def eval_step() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            forward(x)

    for _ in range(3):                       # warm up (and compile)
        train_step()
        eval_step()
    return train_step, eval_step


def rate(step, batch: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="also the torch.compile arms")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    print_machine(machine_info())
    bf16_ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    arms = [("NCDHW fp32", False, False, False), ("channels-last fp32", True, False, False),
            ("NCDHW bf16 autocast", False, True, False),
            ("channels-last bf16 autocast", True, True, False)]
    if args.compile:
        arms += [("channels-last fp32 compiled", True, False, True)]
    built = {name: make_arm(cl, bf, comp, args.batch_size) for name, cl, bf, comp in arms}
    results: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in built}
    for _ in range(args.rounds):
        for name, (train_step, eval_step) in built.items():
            results[name][0].append(rate(train_step, args.batch_size, args.steps))
            results[name][1].append(rate(eval_step, args.batch_size, args.steps))
    print(f"batch {args.batch_size}, {torch.get_num_threads()} threads, bf16 kernels on this "
          f"CPU: {bf16_ok}; samples/s, median of {args.rounds} rounds")
    base = statistics.median(results["channels-last fp32"][0])
    print("| arm | training | validation | training vs channels-last fp32 |")
    print("|---|---|---|---|")
    for name, (trn, val) in results.items():
        print(f"| {name} | {statistics.median(trn):.1f} | {statistics.median(val):.1f} | "
              f"{statistics.median(trn) / base:.2f}× |")
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
