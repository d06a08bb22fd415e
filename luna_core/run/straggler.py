"""Which rank of a torchrun job holds it back, from each rank's timings (issue 34).

Under DDP every rank's step takes as long as the slowest's: the fast ranks wait for it twice,
at the broadcast of the model's buffers that starts each forward pass and at the all-reduce in
the backward pass. So the step time, the backward time and those waits cannot name the
culprit; what a rank does on its own can: its wait for the next batch (the data loader),
its copy to the device, its forward pass itself (timed from after the broadcast). Each
rank's means over a window of batches (``RankWindow``) are judged against the other ranks'
(``judge``):

- **data wait**: the rank waits for data a share of its step of at least ``DATA_SHARE`` while
  every other rank waits at most half that share ("rank 3: data wait 61 % of its step, others
  ≤ 4 %");
- **copy to the device** or **forward**: at least ``SLOW_FACTOR`` × the median of the other
  ranks, and at least ``MIN_PART`` of the rank's step ("rank 5: forward 1.8× the median").

Each rank's **score** in [0, 1] is the fastest rank's own time (data + copy + forward) over
its own (1: the fastest); ``self_score`` its own best over its own now. A rank is **named**
only when the rule picks it in ``HOLD`` windows in a row, and stays named until it has not
been picked in ``HOLD`` windows in a row, so one slow batch does not flap it
(``StragglerWatch``). Standard library only: the loop, the cockpit and the summary share it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields

DATA_SHARE = 0.10
SLOW_FACTOR = 1.5
MIN_PART = 0.05
HOLD = 3
#: A named straggler that lasts this long is worth telling the user (bell, --notify-cmd).
ALERT_AFTER_S = 60.0


@dataclass(frozen=True)
class RankWindow:
    """One rank's means per batch over a window of training batches (seconds)."""

    rank: int
    host: str = ""
    device: str = ""
    batches: int = 0
    data_s: float = 0.0          # waiting for the loader's next batch
    copy_s: float = 0.0          # to the device (and the augmentation there)
    sync_s: float = 0.0          # waiting for the others at DDP's buffer broadcast
    forward_s: float = 0.0       # the forward pass itself
    backward_s: float = 0.0      # with the all-reduce's wait for the slowest rank
    step_s: float = 0.0          # the optimizer
    samples_per_s: float = 0.0
    util_percent: float | None = None       # NVML, this rank's own GPU (None: no GPU)
    mem_used: int | None = None
    mem_total: int | None = None
    power_w: float | None = None

    @property
    def total_s(self) -> float:
        return (self.data_s + self.copy_s + self.sync_s + self.forward_s + self.backward_s
                + self.step_s)

    @property
    def own_s(self) -> float:
        """What the rank does before it waits for the others."""
        return self.data_s + self.copy_s + self.forward_s

    @property
    def data_share(self) -> float:
        return self.data_s / self.total_s if self.total_s > 0 else 0.0


def window_of(row) -> RankWindow:
    """A rank's window from its row in a ``rank_timings`` event (extra keys, such as the
    scores, left out; a part the row lacks is 0)."""
    names = {f.name for f in fields(RankWindow)}
    return RankWindow(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class Suspect:
    rank: int
    part: str                    # "data wait", "copy to the device", "forward"
    reason: str                  # "rank 3: data wait 61 % of its step, others ≤ 4 %"
    excess: float                # how far past the rule (for picking among suspects)


def scores(windows: list[RankWindow]) -> dict[int, float]:
    """Per rank: the fastest rank's own time over its own (1: the fastest)."""
    fastest = min((w.own_s for w in windows), default=0.0)
    return {w.rank: (fastest / w.own_s if w.own_s > 0 else 1.0) for w in windows}


def judge(windows: list[RankWindow]) -> Suspect | None:
    """The rank this window's timings single out, if any (see the module)."""
    if len(windows) < 2:
        return None
    found: list[Suspect] = []
    for w in windows:
        others = [o for o in windows if o.rank != w.rank]
        share, most = w.data_share, max(o.data_share for o in others)
        if share >= DATA_SHARE and most <= share / 2:
            found.append(Suspect(w.rank, "data wait", f"rank {w.rank}: data wait "
                                 f"{100 * share:.0f} % of its step, others ≤ "
                                 f"{100 * most:.0f} %", share / max(most, 1e-3)))
        for part, mine, theirs in (
                ("copy to the device", w.copy_s, [o.copy_s for o in others]),
                ("forward", w.forward_s, [o.forward_s for o in others])):
            median = statistics.median(theirs)
            if median > 0 and mine >= SLOW_FACTOR * median and mine >= MIN_PART * w.total_s:
                found.append(Suspect(w.rank, part, f"rank {w.rank}: {part} "
                                     f"{mine / median:.1f}× the median", mine / median))
    return max(found, key=lambda s: s.excess, default=None)


@dataclass
class StragglerWatch:
    """Names a straggler only after ``hold`` windows in a row pick it, and clears it after
    ``hold`` windows in a row that do not (see the module); tracks each rank's best own
    time and how long the named one has been named."""

    hold: int = HOLD
    named: Suspect | None = None
    named_since: float | None = None
    named_s: float = 0.0          # the run's time with a straggler named, so far
    _streak: tuple[int, int] = (-1, 0)    # (rank picked, windows in a row)
    _clear: int = 0
    _best_own: dict[int, float] = field(default_factory=dict)
    _last_t: float | None = None

    def update(self, windows: list[RankWindow], t: float) -> Suspect | None:
        """Fold one window of every rank (at time ``t``); returns the named straggler."""
        if self.named is not None and self._last_t is not None:
            self.named_s += max(0.0, t - self._last_t)
        self._last_t = t
        for w in windows:
            if w.own_s > 0:
                self._best_own[w.rank] = min(self._best_own.get(w.rank, w.own_s), w.own_s)
        picked = judge(windows)
        rank, run = self._streak
        self._streak = ((picked.rank, run + 1 if picked.rank == rank else 1) if picked
                        else (-1, 0))
        if picked is not None and self._streak[1] >= self.hold:
            if self.named is None or self.named.rank != picked.rank:
                self.named_since = t
            self.named, self._clear = picked, 0
        elif self.named is not None:
            still = picked is not None and picked.rank == self.named.rank
            self._clear = 0 if still else self._clear + 1
            if still:
                self.named = picked              # the latest numbers of the same rank
            elif self._clear >= self.hold:
                self.named, self.named_since, self._clear = None, None, 0
        return self.named

    def self_score(self, w: RankWindow) -> float:
        """The rank's best own time over its own now (1: as fast as it ever was)."""
        best = self._best_own.get(w.rank)
        return best / w.own_s if best and w.own_s > 0 else 1.0

    def named_for(self, t: float) -> float:
        """How long the named straggler has been named at ``t`` (0: none)."""
        return t - self.named_since if self.named is not None and self.named_since else 0.0
