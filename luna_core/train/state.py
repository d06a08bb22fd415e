"""Where the training loop is: one object, read by the loop's collaborators (the batch
reporter, the run control, checkpoints) instead of attributes handed around."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class LoopState:
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # seconds
    total_samples: int = 0       # training samples seen in the run (all ranks): the TB step
    # where a checkpoint taken now resumes: (epoch, training batches of it done)
    position: tuple[int, int] = (1, 0)
    trn_metrics_g: torch.Tensor | None = None   # this epoch's training metrics so far
    # the phase under way
    phase: str = ""              # "trn" or "val"
    epoch: int = 0
    batch_count: int = 0
    batch_ndx: int = 0           # the batch under way (or just done)
    phase_t0: float = 0.0        # clock() when the phase started
    paused_s: float = 0.0        # of it, seconds spent paused
    data_s: float = 0.0          # the batch under way: seconds waited for its data
    t_batch: float = 0.0         # clock() when its data arrived

    def start_phase(self, phase: str, epoch: int, batch_count: int) -> None:
        self.phase, self.epoch, self.batch_count = phase, epoch, batch_count

    def start_clock(self) -> None:
        self.phase_t0, self.paused_s = self.clock(), 0.0

    def next_batch(self, batch_iter, batch_ndx: int, delay: float = 0.0):
        """The next batch from ``batch_iter``, timing the wait for it (``delay``: a test's
        slowed data, luna_core.train.rank_timing)."""
        t0 = self.clock()
        if delay:
            time.sleep(delay)
        batch_tup = next(batch_iter)
        self.batch_ndx, self.t_batch = batch_ndx, self.clock()
        self.data_s = self.t_batch - t0
        return batch_tup

    def active_s(self) -> float:
        """Seconds of the phase so far, paused time left out."""
        return self.clock() - self.phase_t0 - self.paused_s
