"""Where the loop runs: the device, DDP under torchrun, CPU threads, RNG seeds, autocast and
the module the loop calls (the model, DDP-wrapped and/or compiled)."""

from __future__ import annotations

import contextlib
import logging
import os
from argparse import Namespace

import numpy as np
import torch

from luna_core.errors import LunaInputError
from luna_core.run import events as ev
from luna_core.train.distributed import DistContext

log = logging.getLogger(__name__)


def wants_cuda(choice: str) -> bool:
    """--device auto|cuda|cpu: use CUDA? (cuda without a CUDA device is an input error)"""
    use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise LunaInputError("--device cuda: no CUDA device is available "
                             "(is this a CPU build of torch?)")
    return use_cuda


def sinks_for_rank(sinks: list, dist: DistContext) -> list:
    """Rank 0 keeps the caller's sinks; the others send them warnings and errors only."""
    if dist.is_main:
        return sinks
    return [_MainRankOnly(sink, dist.rank) for sink in sinks]


class _MainRankOnly:
    """Wraps a caller's sink on ranks other than 0: warnings and errors only."""

    def __init__(self, sink, rank: int) -> None:
        self.sink, self.rank = sink, rank

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.LogRecord) and event.level in ("WARNING", "ERROR", "CRITICAL"):
            self.sink(ev.LogRecord(level=event.level, message=f"[rank {self.rank}] "
                                   f"{event.message}", t=event.t))


def log_rank(dist: DistContext, use_cuda: bool) -> None:
    if dist.enabled:
        log.info("DDP: rank %d of %d (%s)", dist.rank, dist.world_size,
                 "nccl" if use_cuda else "gloo")


def cuda_device(dist: DistContext) -> torch.device:
    """This rank's GPU, with cudnn autotuning on."""
    torch.backends.cudnn.benchmark = True
    log.info("Using CUDA; %d devices.", torch.cuda.device_count())
    return torch.device("cuda", dist.local_rank)


def set_cpu_threads(args: Namespace, world_size: int) -> None:
    """--threads, or the cores left beside the loader workers (--num-workers)."""
    # On the CPU the model and the loader workers share the cores: oversubscribing them
    # halves the speed on small machines (measured: 1 thread beside 2 workers on 2 cores
    # runs twice as fast as torch's default of 2).
    threads = args.threads or max(1, ((os.cpu_count() or 1) - args.num_workers) // world_size)
    torch.set_num_threads(threads)


def seed_rngs(seed: int) -> None:
    """torch's and numpy's RNGs from --seed: the initial weights and every later draw."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def wrap_model(model: torch.nn.Module, dist: DistContext, device: torch.device,
               compile_model: bool) -> torch.nn.Module:
    """The module the loop calls: ``model`` in DistributedDataParallel under torchrun, then
    torch.compile'd with --compile (weights stay shared with ``model``)."""
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        model = torch.compile(model)
    return model


def autocast(device: torch.device):
    """bf16 autocast on a GPU; nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
