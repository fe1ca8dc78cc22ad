"""Per-cell routing: the shared gradient-density measure picks each LR cell's rung: the cheap rung (bicubic) at
or below the manifest's cheap threshold, else the INT8 variant of its image-wise bit factor."""
from __future__ import annotations

import cv2
import numpy as np

from .complexity import gradient_density
from .images import as_float
from .manifest import Manifest
from .rung import is_cheap
from .tiling import Grid, Tile

CHEAP = "cheap"  # a cell's route that runs no network
FP32 = "fp32"  # a cell that ran the FP32 graph (--variant fp32)
# overlay colours (RGB) of the route: cheap rung yellow, fewer bits blue, base green, more bits red, FP32 gray
FACTOR_COLORS = {CHEAP: (250, 215, 30), -1: (40, 90, 255), 0: (40, 200, 60), 1: (255, 50, 40),
                 FP32: (200, 200, 200)}


def cell_complexity(rgb: np.ndarray, tile: Tile) -> float:
    y0, y1, x0, x1 = tile.cell
    return gradient_density(as_float(rgb[y0:y1, x0:x1]))


def route(rgb: np.ndarray, tiles: list[Tile], model: Manifest, fixed: int | None = None,
          cheap: bool = True) -> list[int | str]:
    """Route per tile from the manifest's thresholds (the cheap rung only where `cheap`), or `fixed` for every
    tile."""
    if fixed is not None:
        return [fixed] * len(tiles)
    threshold = model.cheap_threshold if cheap else None
    routes: list[int | str] = []
    for tile in tiles:
        c = cell_complexity(rgb, tile)
        routes.append(CHEAP if is_cheap(c, threshold) else model.factor_for(c))
    return routes


# The overlay is enlarged (nearest) until its short side reaches 512 px, but never past 2^24 pixels (48 MiB of
# RGB) unless the LR picture itself is larger: a 1 x 3000 strip asked 4.5 GiB of the old short-side rule.
OVERLAY_MIN_SIDE, OVERLAY_MAX_PIXELS = 512, 1 << 24


def overlay_factor(height: int, width: int) -> int:
    """The overlay's enlargement: readable, with at most max(height * width, OVERLAY_MAX_PIXELS) pixels."""
    readable = int(np.ceil(OVERLAY_MIN_SIDE / max(1, min(height, width))))
    return max(1, min(readable, int(np.sqrt(OVERLAY_MAX_PIXELS / (height * width)))))


def overlay(rgb: np.ndarray, grid: Grid, factors: list[int]) -> np.ndarray:
    """The LR picture tinted by each cell's factor, with cell borders; enlarged to be readable (overlay_factor
    bounds its memory whatever the aspect ratio). Returns RGB uint8."""
    base = np.clip(as_float(rgb), 0, 255).astype(np.uint8)
    tint = np.empty_like(base)
    for tile, f in zip(grid.tiles(), factors):
        y0, y1, x0, x1 = tile.cell
        tint[y0:y1, x0:x1] = FACTOR_COLORS[f]
    gray = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out = cv2.addWeighted(gray, 0.55, tint, 0.45, 0.0)
    k = overlay_factor(*base.shape[:2])
    out = cv2.resize(out, (out.shape[1] * k, out.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    for tile in grid.tiles():
        y0, y1, x0, x1 = (v * k for v in tile.cell)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
    return out
