"""System readings for the cockpit: CPU, RAM, the training process, and GPUs through NVML.

GPU numbers come from NVML via ``pynvml`` (the nvidia-ml-py package) when a driver is there;
otherwise the reading simply says there is no GPU. Never shells out to nvidia-smi.
A probe is a callable returning a ``SystemReading``; tests pass a frozen one.

``SystemProbe()`` watches this process (the in-process cockpit trains in it);
``SystemProbe(pid=N)`` watches another one, and ``RunProcessProbe`` is what `luna-tui attach`
uses: the attaching machine's view of the run's process, or a plain "not visible" when the
run is on another host or its process is gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from luna_core.run.runs import on_this_host, this_host
from luna_tui.model.system_reading import GpuReading, SystemReading

__all__ = ["GpuReading", "RunProcessProbe", "SystemProbe", "SystemProbeFn", "SystemReading"]

SystemProbeFn = Callable[[], "SystemReading"]


class SystemProbe:
    """Reads psutil and NVML. Cheap enough for ~1 Hz in the UI thread; never raises.

    ``pid``: the process to watch (default: this one); ``watch`` changes it."""

    def __init__(self, *, gpu: bool = True, pid: int | None = None) -> None:
        self._psutil = None
        self._proc = None
        self._pid = os.getpid() if pid is None else pid
        self._own = pid is None or pid == os.getpid()
        self._proc_error: str | None = None
        self._children: dict[int, object] = {}   # kept, so their cpu_percent has a base
        self._nvml = None
        self._nvml_tried = not gpu
        self._handles: list = []
        try:
            import psutil

            self._psutil = psutil
            psutil.cpu_percent(interval=None, percpu=True)   # prime: first call returns 0
            psutil.cpu_percent(interval=None)
        except Exception:  # noqa: BLE001 - a missing reading is shown as "?"
            self._psutil = None
        self._open_proc()

    @property
    def pid(self) -> int:
        return self._pid

    def watch(self, pid: int) -> None:
        """Watch another process from now on (a resumed run has a new one)."""
        if pid != self._pid:
            self._pid = pid
            self._own = pid == os.getpid()
            self._children.clear()
            self._open_proc()

    def _open_proc(self) -> None:
        ps = self._psutil
        self._proc, self._proc_error = None, None
        if ps is None:
            return
        try:
            self._proc = ps.Process(self._pid)
            self._proc.cpu_percent(interval=None)            # prime
        except ps.NoSuchProcess:
            self._proc_error = f"process {self._pid} is not running"
        except ps.AccessDenied:
            self._proc_error = f"process {self._pid} is not visible (access denied)"
        except Exception as exc:  # noqa: BLE001
            self._proc_error = f"process {self._pid}: {exc}"

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
            values.update(self._read_proc())
        if not self._nvml_tried:
            self._init_nvml()
        gpus: tuple[GpuReading, ...] = ()
        if self._nvml is not None:
            gpus = tuple(self._gpu(i, h) for i, h in enumerate(self._handles))
        return SystemReading(gpus=gpus, **values)

    def _read_proc(self) -> dict:
        values: dict = {} if self._own else {"proc_pid": self._pid}
        proc, ps = self._proc, self._psutil
        if proc is None:
            if self._proc_error:
                values["proc_note"] = self._proc_error
            return values
        try:
            if proc.status() == ps.STATUS_ZOMBIE:
                raise ps.NoSuchProcess(self._pid)
            values["proc_rss"] = int(proc.memory_info().rss)
            cpu = proc.cpu_percent(interval=None)
            rss, n = 0, 0
            seen: dict[int, object] = {}
            for child in proc.children(recursive=True):
                child = self._children.get(child.pid, child)
                try:
                    rss += child.memory_info().rss
                    cpu += child.cpu_percent(interval=None)  # 0 on its first reading
                    n += 1
                    seen[child.pid] = child
                except Exception:  # noqa: BLE001 - child exited meanwhile
                    pass
            self._children = seen
            values["children_rss"], values["children"] = rss, n
            values["proc_cpu_percent"] = cpu
        except ps.NoSuchProcess:
            self._proc, self._proc_error = None, f"process {self._pid} has exited"
            values["proc_note"] = self._proc_error
        except ps.AccessDenied:
            values["proc_note"] = f"process {self._pid} is not visible (access denied)"
        except Exception:  # noqa: BLE001
            pass
        return values

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None


class RunProcessProbe:
    """The attaching machine's view of a run's process: the machine's CPU, RAM and GPUs (NVML)
    and the CPU / RSS of the run's PID and its DataLoader workers. ``target()`` gives the
    run's current (pid, host); a run on another host gets a reading that says it is not
    visible from here."""

    def __init__(self, target: Callable[[], tuple[int | None, str]], *,
                 probe: SystemProbe | None = None) -> None:
        self.target = target
        self._probe = probe
        self._made_probe = probe is None

    def __call__(self) -> SystemReading:
        pid, host = self.target()
        if not on_this_host(host):
            return SystemReading(note=f"not available: the run is on host {host}, "
                                      f"this is {this_host()}", gpu_note="")
        if pid is None:
            return SystemReading(note="not available: the run has not said its process id",
                                 gpu_note="")
        if self._probe is None:
            self._probe = SystemProbe(pid=pid)
        else:
            self._probe.watch(pid)
        return self._probe()

    def close(self) -> None:
        if self._probe is not None and self._made_probe:
            self._probe.close()
