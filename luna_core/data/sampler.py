"""The order of samples: one permutation per (seed, epoch), sharded over DDP ranks; or the
book's balanced order (chapter 12): positives and negatives drawn from their own lists."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler

from luna_core.errors import LunaInputError

#: Training samples per epoch with --balanced when --epoch-samples is not given (the book's).
BALANCED_EPOCH_SAMPLES = 200_000


class EpochSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), so every run with the same seed sees the same
    order (the book never shuffles), starting ``start`` samples in when resuming.

    Under DDP each rank takes every ``world_size``-th index of the permutation, which is padded
    by repeating its head (like DistributedSampler) so that all ranks run the same number of
    batches; ``valid_mask`` tells the padding apart so metrics count each sample once."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, epoch_samples: int | None = None) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch_samples = size if epoch_samples is None else int(epoch_samples)
        self.shard_size = math.ceil(self.epoch_samples / world_size)
        self.epoch = 1
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def indices(self) -> list[int]:
        """The epoch's ``epoch_samples`` samples in order, before sharding: permutations of
        the data set one after another (each drawn from (seed, epoch)), cut to length."""
        if not self.shuffle:
            return [i % self.size for i in range(self.epoch_samples)]
        generator = self._generator()
        order: list[int] = []
        while len(order) < self.epoch_samples:
            order += torch.randperm(self.size, generator=generator).tolist()
        return order[:self.epoch_samples]

    def order(self) -> list[int]:
        order = self.indices()
        padded = self.shard_size * self.world_size
        order += order[: padded - self.epoch_samples]
        return order[self.rank::self.world_size]

    def valid_mask(self, count: int, rank: int | None = None) -> torch.Tensor:
        """For the first ``count`` positions of a rank's shard (this one's by default): not
        padding."""
        rank = self.rank if rank is None else rank
        positions = torch.arange(count) * self.world_size + rank
        return positions < self.epoch_samples

    def gathered_indices(self, count: int) -> list[int]:
        """The sample index of each column of the metrics ``gather_samples`` returns for
        ``count`` positions per rank: every rank's shard in rank order, padding left out."""
        order = self.indices()
        out: list[int] = []
        for rank in range(self.world_size):
            positions = range(rank, count * self.world_size, self.world_size)
            out += [order[p] for p in positions if p < self.epoch_samples]
        return out

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return self.shard_size - self.start


class BalancedSampler(EpochSampler):
    """The book's balanced training order: position 0, ratio + 1, 2 (ratio + 1), ... is the
    next positive, the ``ratio`` positions between are the next negatives, each list in its
    own permutation drawn from (seed, epoch) and cycled when used up. ``epoch_samples``
    positions an epoch (the book: 200,000); sharded and padded over ranks like EpochSampler."""

    def __init__(self, is_positive, seed: int, ratio: int = 1, rank: int = 0,
                 world_size: int = 1, epoch_samples: int | None = None) -> None:
        labels = np.asarray(is_positive, dtype=bool)
        self.positives = np.flatnonzero(labels)
        self.negatives = np.flatnonzero(~labels)
        if ratio < 1:
            raise LunaInputError(f"--balanced takes a ratio of at least 1, not {ratio}")
        if not len(self.positives) or not len(self.negatives):
            raise LunaInputError("--balanced needs nodules and non-nodules in the training "
                                 f"set ({len(self.positives)} and {len(self.negatives)})")
        self.ratio = int(ratio)
        super().__init__(len(labels), seed, True, rank, world_size,
                         BALANCED_EPOCH_SAMPLES if epoch_samples is None else epoch_samples)

    def indices(self) -> list[int]:
        generator = self._generator()
        pos_perm = torch.randperm(len(self.positives), generator=generator).numpy()
        neg_perm = torch.randperm(len(self.negatives), generator=generator).numpy()
        at = np.arange(self.epoch_samples)
        group = self.ratio + 1
        is_pos = at % group == 0
        pos_no = at // group                     # the how-many-th positive so far
        neg_no = at - 1 - pos_no                 # the how-many-th negative so far
        order = np.where(is_pos,
                         self.positives[pos_perm[pos_no % len(pos_perm)]],
                         self.negatives[neg_perm[np.maximum(neg_no, 0) % len(neg_perm)]])
        return order.tolist()
