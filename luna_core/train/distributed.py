"""torchrun / DistributedDataParallel support: one process per GPU (or CPU process, gloo).

Under ``torchrun`` (WORLD_SIZE > 1 in the environment) every rank runs the same loop on its
own shard. Rank 0 alone writes TensorBoard, the event file and checkpoints and serves the
control socket. Decisions taken between batches (pause, checkpoint, stop, a signal, a
non-finite loss) are combined over all ranks on a small gloo group on the CPU — so a GPU run
does not sync the device for them — and every rank applies them at the same batch boundary.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control_group: object = None   # gloo group for CPU-side flags

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    control_group = dist.new_group(backend="gloo") if use_cuda else dist.group.WORLD
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank,
                       control_group=control_group)


def combine_flags(ctx: DistContext, flags: list[int]) -> list[int]:
    """Element-wise max over ranks (a flag raised anywhere is raised everywhere)."""
    if not ctx.enabled:
        return flags
    t = torch.tensor(flags, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.control_group)
    return t.tolist()


def all_ranks_finite(ctx: DistContext, finite_g: torch.Tensor) -> torch.Tensor:
    """True only where every rank's loss was finite; stays on the device (no host sync)."""
    if not ctx.enabled:
        return finite_g
    flag = finite_g.to(torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.bool()


def gather_rows(ctx: DistContext, rows_g: torch.Tensor) -> list[torch.Tensor]:
    """All ranks' (k, n) tensors (same shape on every rank), rank order."""
    if not ctx.enabled:
        return [rows_g]
    out = [torch.empty_like(rows_g) for _ in range(ctx.world_size)]
    dist.all_gather(out, rows_g.contiguous())
    return out


def gather_samples(ctx: DistContext, metrics_g: torch.Tensor, sampler) -> torch.Tensor:
    """(k, N) per-sample rows of every rank, each sample exactly once (the padding that
    ``sampler``, an EpochSampler, added is dropped), on the CPU."""
    if not ctx.enabled:
        return metrics_g.cpu()
    rows = gather_rows(ctx, metrics_g)
    valid = [sampler.valid_mask(metrics_g.shape[1], rank) for rank in range(ctx.world_size)]
    return torch.cat([r.cpu()[:, v] for r, v in zip(rows, valid, strict=True)], dim=1)


def broadcast_object(ctx: DistContext, value):
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=ctx.control_group)
    return box[0]


def on_rank0(ctx: DistContext, make):
    """``make()`` on rank 0, its result on every rank. A LunaInputError of rank 0 (a live
    run's folder, a folder that cannot be made) is raised on every rank at once: the others
    never wait for a broadcast that does not come."""
    from luna_core.errors import LunaInputError

    result = error = None
    if ctx.is_main:
        try:
            result = make()
        except LunaInputError as exc:
            error = exc
    shared = broadcast_object(ctx, ("error", str(error)) if error else ("ok", result))
    if error is not None:
        raise error
    if shared[0] == "error":
        raise LunaInputError(f"rank 0: {shared[1]}")
    return shared[1]


#: How long a rank waits at the end for the others before tearing the process group down.
SHUTDOWN_WAIT = datetime.timedelta(seconds=60)


def shutdown(ctx: DistContext) -> None:
    """Tear the process group down once every rank is here: a rank that destroyed its group
    and exited while another still used it could abort in gloo's threads ("terminate called
    without an active exception", seen once in ~20 two-process runs). A rank that never comes
    (it failed) costs at most SHUTDOWN_WAIT."""
    if ctx.enabled and dist.is_initialized():
        try:
            dist.monitored_barrier(group=ctx.control_group, timeout=SHUTDOWN_WAIT)
        except RuntimeError:
            pass  # another rank is gone: nothing left to wait for
        dist.destroy_process_group()
