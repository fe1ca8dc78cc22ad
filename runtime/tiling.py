"""Split an LR image into routing cells and overlapping inference windows; stitch the outputs.

Cells (at most patch x patch, equal sizes per axis) are what the complexity measure routes. Each cell is run
with `overlap` LR pixels of context on every side that has a neighbour (none at the image border, so no
pixel is computed more often than the seams need). In the overlap band neighbouring outputs are cross-faded
with linear weights, which hides the zero-padding seam of each tile. The stitcher keeps only a horizontal
strip of float accumulators and finalises rows as soon as no later tile can touch them, so memory does not
grow with the image beyond the output itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """Cells [cell_start, cell_end) and windows [win_start, win_end) along one axis."""
    cell_start: list[int]
    cell_end: list[int]
    win_start: list[int]
    win_end: list[int]


def split_axis(length: int, patch: int, overlap: int) -> Axis:
    """Overlap is capped at half a cell, so that only neighbouring windows meet (the weights need that)."""
    n = math.ceil(length / patch)
    size = math.ceil(length / n)
    overlap = min(overlap, size // 2)
    starts = [i * size for i in range(n)]
    ends = [min(s + size, length) for s in starts]
    return Axis(starts, ends, [max(s - overlap, 0) for s in starts], [min(e + overlap, length) for e in ends])


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    cell: tuple[int, int, int, int]  # y0, y1, x0, x1 (LR)
    window: tuple[int, int, int, int]  # y0, y1, x0, x1 (LR): the cell plus its context


@dataclass(frozen=True)
class Grid:
    height: int
    width: int
    ys: Axis
    xs: Axis

    @property
    def rows(self) -> int:
        return len(self.ys.cell_start)

    def row_tiles(self, r: int) -> list[Tile]:
        ys, xs = self.ys, self.xs
        return [Tile(r, c, (ys.cell_start[r], ys.cell_end[r], xs.cell_start[c], xs.cell_end[c]),
                     (ys.win_start[r], ys.win_end[r], xs.win_start[c], xs.win_end[c]))
                for c in range(len(xs.cell_start))]

    def tiles(self) -> list[Tile]:
        return [t for r in range(self.rows) for t in self.row_tiles(r)]

    def computed_pixels(self) -> int:
        """LR pixels the network processes, overlap included (compare with height * width)."""
        def span(a: Axis) -> int:
            return sum(e - s for s, e in zip(a.win_start, a.win_end))
        return span(self.ys) * span(self.xs)


def plan(height: int, width: int, patch: int, overlap: int) -> Grid:
    if patch < 1 or overlap < 0:
        raise ValueError("patch must be positive and overlap non-negative")
    return Grid(height, width, split_axis(height, patch, overlap), split_axis(width, patch, overlap))


def _ramp(size: int, fade_start: int, fade_end: int) -> np.ndarray:
    """1-D weights: linear fade-in over `fade_start` samples, fade-out over `fade_end`, 1 between."""
    u = np.arange(size, dtype=np.float32) + 0.5
    w = np.ones(size, np.float32)
    if fade_start:
        w = np.minimum(w, u / fade_start)
    if fade_end:
        w = np.minimum(w, (size - u) / fade_end)
    return w


def window_weights(grid: Grid, tile: Tile, scale: int) -> np.ndarray:
    """HR blending weights of one window: fades only where a neighbouring window overlaps it."""
    def axis_weights(a: Axis, i: int) -> np.ndarray:
        start, end = a.win_start[i], a.win_end[i]
        fade_in = a.win_end[i - 1] - start if i > 0 else 0
        fade_out = end - a.win_start[i + 1] if i + 1 < len(a.win_start) else 0
        return _ramp((end - start) * scale, max(fade_in, 0) * scale, max(fade_out, 0) * scale)

    return axis_weights(grid.ys, tile.row)[:, None] * axis_weights(grid.xs, tile.col)[None, :]


class StripStitcher:
    """Weighted accumulation of HR tiles into `out`, holding floats only for rows still open.

    The window weights are complementary ramps, so they sum to 1 wherever windows overlap: accumulating
    weighted tiles gives the blended image without a normalisation pass. Tiles arrive channel-first (as
    the network writes them) and are accumulated that way into one buffer that is reused row after row
    (finished rows are converted straight into `out`, the still-open rows move up), so its size is one
    row of windows whatever the image height."""

    def __init__(self, out: np.ndarray, finish):
        """out: H x W x C array to fill; finish: float 2-D array -> out's dtype (rounding, saturation)."""
        self.out, self.finish = out, finish
        self.top = 0  # HR row that acc[:, 0] holds: the first row not yet final
        self.acc = np.zeros((out.shape[2], 0, out.shape[1]), np.float32)

    def reserve(self, bottom: int) -> None:
        """Make rows up to `bottom` (exclusive) accumulable; grows only when a taller row of windows comes."""
        extra = bottom - self.top - self.acc.shape[1]
        if extra > 0:
            c, _, w = self.acc.shape
            self.acc = np.concatenate([self.acc, np.zeros((c, extra, w), np.float32)], axis=1)

    def add(self, y0: int, x0: int, tile: np.ndarray, weights: np.ndarray) -> None:
        """Accumulate `tile` (C x h x w float32, modified in place) with its blending `weights` at (y0, x0)."""
        h, w = tile.shape[1:]
        self.reserve(y0 + h)
        tile *= weights[None]  # the caller's buffer: saves a copy per tile
        self.acc[:, y0 - self.top:y0 - self.top + h, x0:x0 + w] += tile

    def finalize_until(self, row: int) -> None:
        """Rows above `row` receive no more tiles: convert them into `out`, then reuse their floats."""
        n = min(row, self.out.shape[0]) - self.top
        if n <= 0:
            return
        self.reserve(self.top + n)
        for ch in range(self.acc.shape[0]):
            self.out[self.top:self.top + n, :, ch] = self.finish(self.acc[ch, :n])
        rest = self.acc.shape[1] - n
        self.acc[:, :rest] = self.acc[:, n:].copy()
        self.acc[:, rest:] = 0.0
        self.top += n
