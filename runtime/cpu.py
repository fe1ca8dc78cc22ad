"""What CPU this is and which int8 dot-product instructions it has (numbers in reports must say so), and how
much of it other work takes (a measurement taken beside other work is not the machine's)."""
from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# int8 dot-product extensions that ONNX Runtime's MLAS kernels use, by /proc/cpuinfo flag
INT8_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
              "asimddp": "ARM dot product (SDOT/UDOT)", "i8mm": "ARM I8MM"}
MIN_TICKS = 50  # core-ticks a measurement of other work needs (0.25 s on 2 cores at 100 ticks a second)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def int8_extensions() -> list[str]:
    flags = set()
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    return [name for flag, name in INT8_FLAGS.items() if flag in flags]


def cpu_ghz() -> float | None:
    """Nominal clock: the highest 'cpu MHz' /proc/cpuinfo reports (Linux x86), else None."""
    mhz = [float(v) for k, _, v in (line.partition(":") for line in _cpuinfo().splitlines())
           if k.strip() == "cpu MHz" and v.strip()]
    return max(mhz) / 1000 if mhz else None


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's share), else the CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores() -> int:
    """Usable cores minus the other work on them now (the 1-minute load average), at least one. OpenMP threads
    that outnumber the free cores spin against the other work: torch's calibration ran 668 s instead of 58 s
    on a busy machine, and a 2-thread fine-tuning here took 32-86 s where 1 thread took 15 s beside two busy
    processes on 2 cores."""
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, usable_cores() - int(round(busy)))


def _ticks() -> tuple[int, float] | None:
    """(busy clock ticks of the CPUs this process may run on, steal included; this process's own ticks), from
    /proc/stat and os.times; None where there is no /proc/stat."""
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        busy = 0
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name in cpus:  # user nice system idle iowait irq softirq steal
                ticks = [int(v) for v in fields[:8]]
                busy += sum(ticks) - ticks[3] - ticks[4]
        own = os.times()
        return busy, (own.user + own.system) * os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return None


@contextmanager
def other_work() -> Iterator[list[float]]:
    """Measures the share of this process's cores that other work used while the block ran (0: none, 1: all of
    them), into the list it yields. The list stays empty where the system does not say (no /proc/stat) or the
    block was too short for clock ticks to tell (under MIN_TICKS core-ticks: each count is +-1 tick per core)."""
    share: list[float] = []
    before, start = _ticks(), time.perf_counter()
    yield share
    after, seconds = _ticks(), time.perf_counter() - start
    available = seconds * os.sysconf("SC_CLK_TCK") * usable_cores() if before and after else 0
    if available >= MIN_TICKS:
        others = (after[0] - before[0]) - (after[1] - before[1])
        share.append(min(1.0, max(0.0, others / available)))
