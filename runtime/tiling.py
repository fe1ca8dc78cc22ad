"""Split an LR image into routing cells and equal-sized overlapping inference windows; stitch the outputs.

Cells (at most patch x patch, equal sizes per axis) are what the complexity measure routes. Each cell is run
with `overlap` LR pixels of context on every side that has a neighbour; all windows of an image have one shape
(edge windows slide inward), so tiles batch. In the overlap band neighbouring outputs are cross-faded with
linear weights, which hides the zero-padding seam of each tile. The stitcher keeps only a horizontal strip of
float accumulators and finalises rows as soon as no later tile can touch them, so memory does not grow with
the image beyond the output itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """Cells [cell_start, cell_end) and windows [win_start, win_start + win_size) along one axis."""
    cell_start: list[int]
    cell_end: list[int]
    win_start: list[int]
    win_size: int


def split_axis(length: int, patch: int, overlap: int) -> Axis:
    n = math.ceil(length / patch)
    size = math.ceil(length / n)
    starts = [i * size for i in range(n)]
    ends = [min(s + size, length) for s in starts]
    win = min(size + 2 * overlap, length)
    win_starts = [min(max(s - overlap, 0), length - win) for s in starts]
    return Axis(starts, ends, win_starts, win)


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    cell: tuple[int, int, int, int]  # y0, y1, x0, x1 (LR)
    window: tuple[int, int]  # y0, x0 (LR); size is Grid.window_shape


@dataclass(frozen=True)
class Grid:
    height: int
    width: int
    ys: Axis
    xs: Axis

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.ys.win_size, self.xs.win_size

    @property
    def rows(self) -> int:
        return len(self.ys.cell_start)

    def row_tiles(self, r: int) -> list[Tile]:
        ys, xs = self.ys, self.xs
        return [Tile(r, c, (ys.cell_start[r], ys.cell_end[r], xs.cell_start[c], xs.cell_end[c]),
                     (ys.win_start[r], xs.win_start[c])) for c in range(len(xs.cell_start))]

    def tiles(self) -> list[Tile]:
        return [t for r in range(self.rows) for t in self.row_tiles(r)]

    def computed_pixels(self) -> int:
        """LR pixels the network processes, overlap included (compare with height * width)."""
        return len(self.ys.cell_start) * len(self.xs.cell_start) * self.ys.win_size * self.xs.win_size


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
    (h, w), (y0, x0) = grid.window_shape, tile.window

    def axis_weights(start: int, size: int, prev_end: int | None, next_start: int | None):
        fade_in = max(0, prev_end - start) if prev_end is not None else 0
        fade_out = max(0, start + size - next_start) if next_start is not None else 0
        return _ramp(size * scale, fade_in * scale, fade_out * scale)

    ys, xs, r, c = grid.ys, grid.xs, tile.row, tile.col
    wy = axis_weights(y0, h, ys.win_start[r - 1] + h if r > 0 else None,
                      ys.win_start[r + 1] if r + 1 < grid.rows else None)
    wx = axis_weights(x0, w, xs.win_start[c - 1] + w if c > 0 else None,
                      xs.win_start[c + 1] if c + 1 < len(xs.win_start) else None)
    return wy[:, None] * wx[None, :]


class StripStitcher:
    """Weighted accumulation of HR tiles into `out`, holding floats only for rows still open.

    The window weights are complementary ramps, so they sum to 1 wherever windows overlap: accumulating
    weighted tiles gives the blended image without a normalisation pass. Tiles arrive channel-first (as
    the network writes them) and are accumulated that way; only the final integers are transposed."""

    def __init__(self, out: np.ndarray, finish):
        """out: H x W x C array to fill; finish: float 2-D array -> out's dtype (rounding, saturation)."""
        self.out, self.finish = out, finish
        self.top = 0  # first HR row not yet final
        self.acc = np.zeros((out.shape[2], 0, out.shape[1]), np.float32)

    def reserve(self, bottom: int) -> None:
        """Make rows up to `bottom` (exclusive) accumulable; one allocation per band instead of per tile row."""
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
        """Rows above `row` receive no more tiles: convert them into `out` and drop their floats."""
        n = row - self.top
        if n <= 0:
            return
        self.reserve(row)
        c, _, w = self.acc.shape
        block = np.ascontiguousarray(self.acc[:, :n]).reshape(c * n, w)
        self.out[self.top:row] = self.finish(block).reshape(c, n, w).transpose(1, 2, 0)
        self.acc, self.top = self.acc[:, n:], row
