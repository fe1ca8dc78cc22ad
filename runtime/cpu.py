"""What CPU this is and which int8 dot-product instructions it has: numbers in reports must say so."""
from __future__ import annotations

import os
import platform
from pathlib import Path

# int8 dot-product extensions that ONNX Runtime's MLAS kernels use, by /proc/cpuinfo flag
INT8_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
              "asimddp": "ARM dot product (SDOT/UDOT)", "i8mm": "ARM I8MM"}


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
