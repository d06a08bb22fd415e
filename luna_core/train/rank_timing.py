"""Each rank's timings of its training batches, gathered to rank 0 every ``every`` batches
(issue 34): the wait for data, the copy to the device (with the augmentation there), the
forward pass, the backward pass (with DDP's all-reduce, which waits for the slowest rank),
the optimizer step; samples/s; and on a GPU that rank's own device's utilisation, memory and
power (NVML, through torch.cuda; none on the CPU).

Cheap enough to leave on: on the CPU a clock read at each mark; on a GPU a CUDA event
recorded on the stream at each mark (no host sync), read back once a window after one wait
for the window's last event. The windows go to rank 0 on the CPU control group (gloo), never
on the GPU stream; rank 0 judges them (luna_core.run.straggler) and says so in a
``RankTimings`` event. A single process times nothing.

``LUNA_TEST_SLOW_DATA=RANK:SECONDS`` (tests only) makes that rank wait that long more for
each training batch's data; unset, it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict

import torch
import torch.distributed as dist

from luna_core.run import events as ev
from luna_core.run.straggler import RankWindow, StragglerWatch, scores
from luna_core.train.distributed import DistContext

log = logging.getLogger(__name__)

#: The parts after the data wait, each ended by a mark: the copy (before the model is
#: called), the buffer broadcast DDP does first (a pre-hook of the wrapped model marks its
#: end), the forward pass, the backward pass (with the all-reduce), the optimizer step.
MARKS = ("copy", "sync", "forward", "backward", "step")
WINDOW_BATCHES = 10
_FIELDS = 3 + len(MARKS) + 1          # batches, data, the parts, samples, wall
_SAMPLES, _WALL = 2 + len(MARKS), 3 + len(MARKS)


def slow_data_delay(rank: int) -> float:
    """The test-only delay of this rank's data (``LUNA_TEST_SLOW_DATA``), 0 when unset."""
    spec = os.environ.get("LUNA_TEST_SLOW_DATA", "")
    if not spec:
        return 0.0
    which, _, seconds = spec.partition(":")
    return float(seconds) if which.strip() == str(rank) else 0.0


class RankTimer:
    """Marks a training batch's parts on this rank; every ``every`` batches, ``window()``
    gathers every rank's means to rank 0 (a collective: every rank calls it at the same
    batch)."""

    def __init__(self, dist_ctx: DistContext, device: torch.device,
                 every: int = WINDOW_BATCHES) -> None:
        self.dist, self.device, self.every = dist_ctx, device, every
        self.enabled = dist_ctx.enabled and every > 0
        self.delay = slow_data_delay(dist_ctx.rank)
        self.cuda = device.type == "cuda"
        self.where: list[tuple[str, str]] = []         # each rank's (host, device)
        self._sums = [0.0] * _FIELDS
        self._t0 = time.monotonic()
        self._marks: dict[str, object] = {}
        self._pending: list[dict[str, object]] = []     # CUDA: the window's batches' events
        if self.enabled:
            names: list[object] = [None] * dist_ctx.world_size
            dist.all_gather_object(names, (socket.gethostname(), str(device)),
                                   group=dist_ctx.control_group)
            self.where = [tuple(map(str, n)) for n in names]

    def watch(self, model: torch.nn.Module) -> None:
        """Mark the end of DDP's buffer broadcast: the wrapped model's forward pre-hook
        (DDP calls it after the broadcast, before the forward pass itself)."""
        if self.enabled:
            model.register_forward_pre_hook(lambda _module, _args: self.mark("sync"))

    # -- marks, in the loop -----------------------------------------------------------------
    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def got_batch(self, data_s: float) -> None:
        """The batch's data arrived after ``data_s`` seconds' wait."""
        if self.enabled:
            self._sums[1] += data_s
            self._marks = {"start": self._now()}

    def mark(self, part: str) -> None:
        """``part`` of MARKS just ended."""
        if self.enabled and self._marks:
            self._marks[part] = self._now()

    def batch_done(self, samples: int) -> None:
        if not self.enabled or not self._marks:
            return
        self._sums[0] += 1
        self._sums[_SAMPLES] += samples
        if self.cuda:
            self._pending.append(self._marks)
        else:
            self._add(self._marks, lambda a, b: b - a)
        self._marks = {}

    def _add(self, marks: dict, seconds) -> None:
        before = marks["start"]
        for k, part in enumerate(MARKS, 2):
            at = marks.get(part)
            if at is None:
                continue
            self._sums[k] += seconds(before, at)
            before = at

    # -- the window: gathered on every rank, judged on rank 0 -------------------------------
    def due(self, batch_ndx: int) -> bool:
        return self.enabled and (batch_ndx + 1) % self.every == 0

    def window(self) -> list[RankWindow] | None:
        """Every rank's window (rank 0; None on the others), the sums then cleared."""
        if self.cuda and self._pending:
            self._pending[-1][MARKS[-1]].synchronize()     # one wait a window, not a batch
            for marks in self._pending:
                self._add(marks, lambda a, b: a.elapsed_time(b) / 1000.0)
            self._pending = []
        now = time.monotonic()
        self._sums[_WALL] = now - self._t0
        mine = torch.tensor(self._sums + self._device_reading(), dtype=torch.float64)
        self._sums, self._t0 = [0.0] * _FIELDS, now
        ctx = self.dist
        rows = [torch.empty_like(mine) for _ in range(ctx.world_size)] if ctx.is_main else None
        dist.gather(mine, rows, dst=0, group=ctx.control_group)
        if not ctx.is_main:
            return None
        return [self._rank_window(r, row.tolist()) for r, row in enumerate(rows)]

    def _device_reading(self) -> list[float]:
        """[util %, memory used, memory total, power W] of this rank's GPU, NaN where there
        is none (the CPU, or no NVML)."""
        nan = float("nan")
        if not self.cuda:
            return [nan] * 4
        out = [nan] * 4
        try:
            free, total = torch.cuda.mem_get_info(self.device)
            out[1], out[2] = float(total - free), float(total)
            out[0] = float(torch.cuda.utilization(self.device))
            out[3] = float(torch.cuda.power_draw(self.device)) / 1000.0     # mW
        except Exception:  # noqa: BLE001 - no NVML (pynvml) or no reading: left unknown
            pass
        return out

    def _rank_window(self, rank: int, row: list[float]) -> RankWindow:
        batches = max(row[0], 1.0)
        part = {name: row[2 + k] / batches for k, name in enumerate(MARKS)}
        device_at = 3 + len(MARKS) + 1

        def known(v: float):
            return None if v != v else v

        host, device = self.where[rank] if rank < len(self.where) else ("", "")
        return RankWindow(
            rank=rank, host=host, device=device,
            batches=int(row[0]), data_s=row[1] / batches, copy_s=part["copy"],
            sync_s=part["sync"], forward_s=part["forward"], backward_s=part["backward"],
            step_s=part["step"],
            samples_per_s=row[_SAMPLES] / row[_WALL] if row[_WALL] > 0 else 0.0,
            util_percent=known(row[device_at]),
            mem_used=None if known(row[device_at + 1]) is None else int(row[device_at + 1]),
            mem_total=None if known(row[device_at + 2]) is None else int(row[device_at + 2]),
            power_w=known(row[device_at + 3]))


class RankReport:
    """Rank 0: folds each window into the straggler watch and sends ``RankTimings`` (at most
    every ``min_gap_s``, and at once when the named straggler changes); the log says when
    a straggler is named and when it is no longer."""

    def __init__(self, bus: ev.EventBus, min_gap_s: float = 1.0, clock=time.monotonic) -> None:
        self.bus, self.min_gap_s, self.clock = bus, min_gap_s, clock
        self.watch = StragglerWatch()
        self._sent_at = -1e18
        self._named: int | None = None

    def __call__(self, windows: list[RankWindow], epoch: int, batch_ndx: int,
                 total_samples: int) -> None:
        now = self.clock()
        named = self.watch.update(windows, now)
        rank = named.rank if named is not None else None
        if rank != self._named:
            if named is not None:
                log.warning("straggler: %s", named.reason)
            else:
                log.info("straggler: rank %s keeps up again", self._named)
        if rank == self._named and now - self._sent_at < self.min_gap_s:
            return
        self._named, self._sent_at = rank, now
        fastest = scores(windows)
        ranks = [{**asdict(w), "score": fastest[w.rank], "self_score": self.watch.self_score(w)}
                 for w in windows]
        straggler = None if named is None else {
            "rank": named.rank, "part": named.part, "reason": named.reason,
            "named_for_s": self.watch.named_for(now)}
        self.bus.emit(ev.RankTimings(epoch=epoch, batch_ndx=batch_ndx,
                                     total_samples=total_samples, ranks=ranks,
                                     straggler=straggler, named_s=self.watch.named_s))
