"""How an LR image is cut into routing cells: at most `patch` pixels per side, equal sizes along each axis. The
one definition that calibration (the cheap rung's budget) and the runtime (routing, tiling) both use. Torch-free.
"""
from __future__ import annotations

import math


def cell_bounds(length: int, patch: int) -> list[tuple[int, int]]:
    """[start, end) of each cell along an axis of `length` pixels."""
    n = math.ceil(length / patch)
    size = math.ceil(length / n)
    return [(i * size, min((i + 1) * size, length)) for i in range(n)]
