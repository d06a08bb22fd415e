"""What the loop says about its batches: BatchDone events (flushed in batches), the book's
ETA lines, and the read-back of skipped updates (the non-finite guard's verdicts)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from luna_core.run import events as ev
from luna_core.run.estimate import EtaLogger
from luna_core.train.state import LoopState

log = logging.getLogger(__name__)

# On a GPU the losses are read back at most this often (one host sync per flush).
FLUSH_EVERY_S = 0.25


class BatchReporter:
    def __init__(self, bus: ev.EventBus, loop: LoopState,
                 on_nonfinite: Callable[[int, int, bool], None]) -> None:
        self.bus, self.loop, self.on_nonfinite = bus, loop, on_nonfinite
        self._pending: list[dict] = []
        self._last_flush = 0.0
        self._flush_every_batch = True
        self._eta: EtaLogger | None = None

    def start_phase(self, sample_count: int, start_batch: int, flush_every_batch: bool) -> None:
        """PhaseStarted for the phase ``loop`` is in, "E1 Training ----/N, starting", and the
        phase's clock started. ``flush_every_batch``: on the CPU, where a read-back is free."""
        loop = self.loop
        self.bus.emit(ev.PhaseStarted(phase=loop.phase, epoch=loop.epoch,
                                      batch_count=loop.batch_count, sample_count=sample_count,
                                      start_batch=start_batch))
        desc = f"E{loop.epoch} {'Training' if loop.phase == 'trn' else 'Validation'}"
        self._eta = EtaLogger(desc, loop.batch_count, log.info, start_batch=start_batch)
        self._eta.start()
        self.loop.start_clock()
        self._pending = []
        self._last_flush = self.loop.clock()
        self._flush_every_batch = flush_every_batch

    def batch_done(self, loss_g: torch.Tensor, skipped_g: torch.Tensor | None,
                   samples: int) -> None:
        """The batch ``loop.batch_ndx`` is done (its loss and why its update was skipped, if
        it was, still on the device): its event (sent now or with the next flush) and, at
        the book's intervals, an ETA line."""
        loop = self.loop
        now = loop.clock()
        self._pending.append(dict(
            phase=loop.phase, epoch=loop.epoch, batch_ndx=loop.batch_ndx,
            batch_count=loop.batch_count, samples=samples, total_samples=loop.total_samples,
            loss=loss_g, skipped=skipped_g, data_s=loop.data_s, compute_s=now - loop.t_batch,
            active_s=loop.active_s()))
        # Losses stay on the device and are read in one go: every batch on the CPU (free),
        # a few times a second on a GPU (one host sync per flush, not per batch).
        if self._flush_every_batch or now - self._last_flush > FLUSH_EVERY_S:
            self.flush()
        self._eta.batch_done(loop.batch_ndx, loop.active_s())

    def end_phase(self, stopped: bool) -> None:
        """Flush; say "<desc> ----/N, done at ..." unless the run is stopping."""
        self.flush()
        if not stopped:
            self._eta.done()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._last_flush = self.loop.clock()
        if not pending:
            return
        # one host transfer for the losses (and the skipped-update flags) of many batches
        rows = [p.pop("loss").float() for p in pending]
        skips = [p.pop("skipped") for p in pending]
        if skips[0] is not None:
            rows += skips
        values = torch.stack(rows).tolist()
        for i, record in enumerate(pending):
            self.bus.emit(ev.BatchDone(loss=values[i], **record))
            if skips[0] is not None and values[len(pending) + i] != 0.0:
                self.on_nonfinite(record["epoch"], record["batch_ndx"],
                                  values[len(pending) + i] == 1.0)
