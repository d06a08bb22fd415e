"""System probe (psutil + NVML, never nvidia-smi) and the text formatters of the panes."""

from __future__ import annotations

import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone

import pytest

from luna_tui.link.system_probe import SystemProbe, SystemReading
from luna_tui.model import formatting as fmt
from luna_tui.widgets.system import render_system
from tests.cockpit_helpers import FROZEN_READING, NO_GPU_READING


def test_probe_reads_this_machine_without_raising(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("the probe must not start processes (no nvidia-smi)")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    probe = SystemProbe()
    try:
        r = probe()
        r = probe()
    finally:
        probe.close()
    assert isinstance(r, SystemReading)
    assert r.cpu_percent is not None and 0.0 <= r.cpu_percent <= 100.0
    assert r.ram_total and r.ram_used and r.proc_rss
    assert len(r.per_cpu) >= 1


def test_probe_without_nvml_says_no_gpu(monkeypatch):
    broken = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        raise NVMLError("NVML Shared Library Not Found")

    broken.nvmlInit = init
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    r = SystemProbe()()
    assert r.gpus == ()
    assert "no GPU" in render_system(r).plain


def test_probe_reads_gpus_through_nvml(monkeypatch):
    nv = types.ModuleType("pynvml")
    nv.NVML_TEMPERATURE_GPU = 0
    nv.nvmlInit = lambda: None
    nv.nvmlShutdown = lambda: None
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=30 * 2**30,
                                                                 total=80 * 2**30)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 61

    def power(h):
        if h == "h1":
            raise RuntimeError("Not Supported")      # some boards do not report power
        return 301_500

    nv.nvmlDeviceGetPowerUsage = power
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    probe = SystemProbe()
    r = probe()
    probe.close()
    assert [g.index for g in r.gpus] == [0, 1]
    g0, g1 = r.gpus
    assert g0.name == "NVIDIA H100 80GB HBM3" and g0.util_percent == 87.0
    assert g0.power_w == pytest.approx(301.5) and g0.power_limit_w == 700.0
    assert g1.power_w is None
    text = render_system(r, 60).plain
    assert "87 % util · 30.0/80.0 GiB · 61 °C · 302/700 W" in text
    assert "? W" in text


def test_render_system_frozen_readings():
    text = render_system(FROZEN_READING, 60).plain
    assert "CPU   41.3 %" in text
    assert "RAM  48.2 of 125.7 GiB (38 %)" in text
    assert "proc 3.4 GiB RSS + 4 children 6.1 GiB" in text
    assert "GPU0 NVIDIA H100 80GB HBM3" in text
    assert render_system(NO_GPU_READING).plain.splitlines()[-1] == "GPU  no GPU"


def test_render_system_many_cores_fit_the_width():
    r = SystemReading(cpu_percent=50.0, per_cpu=tuple(float(i % 100) for i in range(256)))
    first = render_system(r, 40).plain.splitlines()[0]
    assert len(first) <= 40


def test_durations_and_clock_times():
    assert fmt.duration(None) == "?"
    assert fmt.duration(float("nan")) == "?"
    assert fmt.duration(42) == "42s"
    assert fmt.duration(252) == "4m 12s"
    assert fmt.duration(5820) == "1h 37m"
    assert fmt.duration(3 * 86400 + 7200) == "3d 2h"
    now = datetime(2025, 3, 4, 22, 30, tzinfo=timezone.utc)     # a Tuesday
    assert fmt.clock_time(now, 600) == "22:40"
    assert fmt.clock_time(now, 3 * 3600) == "Wed 01:30"
    assert fmt.clock_time(now, timedelta(days=30).total_seconds()) == "2025-04-03"
    assert fmt.clock_time(now, None) == "?"


def test_bars_and_numbers():
    assert fmt.bar(0.5, 10) == "━━━━━─────"
    assert fmt.bar(0.55, 10) == "━━━━━╸────"
    assert len(fmt.bar(2.0, 7)) == 7 and len(fmt.bar(float("nan"), 7)) == 7
    assert fmt.pct(99.7) == "99.7 %" and fmt.pct(float("nan")) == "—"
    assert fmt.num(None) == "—"
    assert fmt.count(494735) == "494,735"
    assert fmt.size(3 * 2**20) == "3.0 MiB"
    assert fmt.spark([0, 50, 100]) == "▁▅█"
