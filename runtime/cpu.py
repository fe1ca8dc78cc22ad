"""What CPU this is and which int8 dot-product instructions it has: numbers in reports must say so."""
from __future__ import annotations

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
