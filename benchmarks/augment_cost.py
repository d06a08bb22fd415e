"""Cost of the book's augmentation per training batch, against the training step itself.

    .venv/bin/python benchmarks/augment_cost.py [--device cpu|cuda] [--batch-size 32]

Times, interleaved over ``--rounds`` rounds, medians: ``augment()`` of a batch of 32 chunks
(1, 32, 48, 48) with every part on (flip, offset 0.1, scale 0.2, rotate, noise 25 HU): the
per-sample parameter draws, one affine_grid + grid_sample, the noise; and one training step
of LunaModel (forward, backward, SGD) on the same batch, as in the trainer. On CUDA each timing
ends with a synchronize.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import machine_info, print_footer, print_machine

from luna_core.train.augment import BOOK, Augmentation, augment, batch_params
from luna_core.train.model import LunaModel


def timed(fn, device, repeat: int) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_machine(machine_info())
    device = torch.device(args.device)
    bs = args.batch_size
    chunks = (torch.rand(bs, 1, 32, 48, 48, device=device) * 2000 - 1000).contiguous(
        memory_format=torch.channels_last_3d)
    labels = torch.randint(0, 2, (bs,), device=device)
    aug = Augmentation(**BOOK)
    model = LunaModel().to(device, memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(chunks)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        opt.step()

    epoch = [0]

    def augmented():
        epoch[0] += 1
        augment(chunks, aug, 0, epoch[0], range(bs))

    def draws():
        batch_params(aug, 0, 1, range(bs))

    rows = {"augment (all parts)": [], "  of which parameter draws": [], "training step": []}
    for _ in range(args.rounds):
        rows["augment (all parts)"].append(timed(augmented, device, 3))
        rows["  of which parameter draws"].append(timed(draws, device, 10))
        rows["training step"].append(timed(step, device, 1 if device.type == "cpu" else 10))
    print(f"\nbatch {bs} x (1, 32, 48, 48) on {device}, medians of {args.rounds} rounds:")
    for name, values in rows.items():
        print(f"  {name:28s} {1000 * statistics.median(values):9.1f} ms")
    share = statistics.median(rows["augment (all parts)"]) / statistics.median(
        rows["training step"])
    print(f"  augmentation / training step: {share:.1%}")
    print_footer(t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
