"""What a system probe reads (luna_tui.link.system_probe): the machine, the run's process and
its GPUs, as plain values the panes show."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    util_percent: float | None = None
    mem_used: int | None = None            # bytes
    mem_total: int | None = None           # bytes
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True)
class SystemReading:
    cpu_percent: float | None = None       # whole machine, 0..100
    per_cpu: tuple[float, ...] = ()
    ram_used: int | None = None            # bytes
    ram_total: int | None = None
    proc_rss: int | None = None            # the training process
    children_rss: int | None = None        # DataLoader workers and other children
    children: int = 0
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)
    gpu_note: str = "no GPU"               # shown when ``gpus`` is empty
    proc_pid: int | None = None            # set when the process watched is not this one
    proc_cpu_percent: float | None = None  # the process and its children, % of one core
    proc_note: str | None = None           # why there are no process numbers
    note: str | None = None                # why there are no readings at all

    @property
    def ram_percent(self) -> float | None:
        if self.ram_used is None or not self.ram_total:
            return None
        return 100.0 * self.ram_used / self.ram_total
