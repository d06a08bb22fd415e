"""Shared helpers of the benchmark scripts: machine description, load, tables, statistics.

Run the scripts as ``python benchmarks/<name>.py`` (this folder is then on ``sys.path``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path


def cpu_model() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU"


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict:
    import numpy
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    ram = ram_gib()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "platform.processor()": platform.processor() or "(empty)",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": round(ram, 1) if ram else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "kernel": platform.release(),
        "loadavg_start": loadavg(),
    }


def print_machine(info: dict) -> None:
    print(f"machine : {info['cpu']} (platform.processor(): {info['platform.processor()']}), "
          f"{info['cores']} cores ({info['usable_cores']} usable), RAM {info['ram_gib']} GiB")
    print(f"software: Python {info['python']}, torch {info['torch']} "
          f"({info['torch_threads']} intra-op threads), numpy {info['numpy']}, "
          f"kernel {info['kernel']}")
    la = info.get("loadavg_start")
    if la:
        print(f"load    : {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min) at start; other "
              f"processes on this machine share its cores")
    print(f"date    : {info['date']}")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "best": max(values), "worst": min(values),
            "runs": [round(v, 2) for v in values]}


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def print_footer(t_start: float):
    """The closing lines every benchmark prints; returns (load average, total seconds)."""
    la = loadavg()
    if la:
        print(f"load at the end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    total_s = time.perf_counter() - t_start
    print(f"total {total_s:.0f} s")
    return la, total_s


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"results written to {path}")
