"""The order of samples: one permutation per (seed, epoch), sharded over DDP ranks."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), so every run with the same seed sees the same
    order (the book never shuffles), starting ``start`` samples in when resuming.

    Under DDP each rank takes every ``world_size``-th index of the permutation, which is padded
    by repeating its head (like DistributedSampler) so that all ranks run the same number of
    batches; ``valid_mask`` tells the padding apart so metrics count each sample once."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.shard_size = math.ceil(size / world_size)
        self.epoch = 1
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = self.shard_size * self.world_size
        order += order[: padded - self.size]
        return order[self.rank::self.world_size]

    def valid_mask(self, count: int, rank: int | None = None) -> torch.Tensor:
        """For the first ``count`` positions of a rank's shard (this one's by default): not
        padding."""
        rank = self.rank if rank is None else rank
        positions = torch.arange(count) * self.world_size + rank
        return positions < self.size

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return self.shard_size - self.start
