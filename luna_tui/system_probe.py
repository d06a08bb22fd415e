"""System readings for the cockpit: CPU, RAM, this process, and GPUs through NVML.

GPU numbers come from NVML via ``pynvml`` (the nvidia-ml-py package) when a driver is there;
otherwise the reading simply says there is no GPU. Never shells out to nvidia-smi.
A probe is a callable returning a ``SystemReading``; tests pass a frozen one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

SystemProbeFn = Callable[[], "SystemReading"]


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
    proc_rss: int | None = None            # this process (the trainer runs in it)
    children_rss: int | None = None        # DataLoader workers and other children
    children: int = 0
    gpus: tuple[GpuReading, ...] = field(default_factory=tuple)
    gpu_note: str = "no GPU"               # shown when ``gpus`` is empty

    @property
    def ram_percent(self) -> float | None:
        if self.ram_used is None or not self.ram_total:
            return None
        return 100.0 * self.ram_used / self.ram_total


class SystemProbe:
    """Reads psutil and NVML. Cheap enough for ~1 Hz in the UI thread; never raises."""

    def __init__(self, *, gpu: bool = True) -> None:
        self._psutil = None
        self._proc = None
        self._nvml = None
        self._nvml_tried = not gpu
        self._handles: list = []
        try:
            import psutil

            self._psutil = psutil
            self._proc = psutil.Process(os.getpid())
            psutil.cpu_percent(interval=None, percpu=True)   # prime: first call returns 0
            psutil.cpu_percent(interval=None)
        except Exception:  # noqa: BLE001 - a missing reading is shown as "?"
            self._psutil = None

    # -- NVML --------------------------------------------------------------------------

    def _init_nvml(self) -> None:
        self._nvml_tried = True
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no library, no driver, no device: "no GPU"
            self._nvml = None
            self._handles = []

    def _gpu(self, index: int, handle) -> GpuReading:
        nv = self._nvml

        def safe(fn, *args):
            try:
                return fn(*args)
            except Exception:  # noqa: BLE001 - unsupported query on this board
                return None

        name = safe(nv.nvmlDeviceGetName, handle)
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        util = safe(nv.nvmlDeviceGetUtilizationRates, handle)
        mem = safe(nv.nvmlDeviceGetMemoryInfo, handle)
        temp = safe(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        power = safe(nv.nvmlDeviceGetPowerUsage, handle)
        limit = safe(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        return GpuReading(
            index=index,
            name=str(name or f"GPU {index}"),
            util_percent=None if util is None else float(util.gpu),
            mem_used=None if mem is None else int(mem.used),
            mem_total=None if mem is None else int(mem.total),
            temp_c=None if temp is None else float(temp),
            power_w=None if power is None else power / 1000.0,
            power_limit_w=None if limit is None else limit / 1000.0,
        )

    # -- reading -----------------------------------------------------------------------

    def __call__(self) -> SystemReading:
        values: dict = {}
        ps = self._psutil
        if ps is not None:
            try:
                values["per_cpu"] = tuple(ps.cpu_percent(interval=None, percpu=True))
                values["cpu_percent"] = (sum(values["per_cpu"]) / len(values["per_cpu"])
                                         if values["per_cpu"] else None)
                vm = ps.virtual_memory()
                values["ram_used"] = int(vm.total - vm.available)
                values["ram_total"] = int(vm.total)
            except Exception:  # noqa: BLE001
                pass
            try:
                values["proc_rss"] = int(self._proc.memory_info().rss)
                rss, n = 0, 0
                for child in self._proc.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                        n += 1
                    except Exception:  # noqa: BLE001 - child exited meanwhile
                        pass
                values["children_rss"], values["children"] = rss, n
            except Exception:  # noqa: BLE001
                pass
        if not self._nvml_tried:
            self._init_nvml()
        gpus: tuple[GpuReading, ...] = ()
        if self._nvml is not None:
            gpus = tuple(self._gpu(i, h) for i, h in enumerate(self._handles))
        return SystemReading(gpus=gpus, **values)

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None
