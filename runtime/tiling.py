"""Split an LR image into routing cells and overlapping inference windows; stitch the outputs.

Cells (at most patch x patch, equal sizes per axis) are what the complexity measure routes. Each cell is run
with `overlap` LR pixels of context on every side that has a neighbour (none at the image border, so no
pixel is computed more often than the seams need). In the overlap band neighbouring outputs are cross-faded
with linear weights, which hides the zero-padding seam of each tile. The stitcher hands back each band of
output rows as soon as no later tile can touch it, keeping floats only for the overlaps still open, so the
output can be written as it is made and memory does not grow with the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import cell_bounds


@dataclass(frozen=True)
class Axis:
    """Cells [cell_start, cell_end) and windows [win_start, win_end) along one axis."""
    cell_start: list[int]
    cell_end: list[int]
    win_start: list[int]
    win_end: list[int]


def split_axis(length: int, patch: int, overlap: int) -> Axis:
    """Cells as runtime.cells cuts them; overlap is capped at half a cell, so that only neighbouring
    windows meet (the weights need that)."""
    bounds = cell_bounds(length, patch)
    overlap = min(overlap, (bounds[0][1] - bounds[0][0]) // 2)
    starts, ends = [s for s, _ in bounds], [e for _, e in bounds]
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


class BandStitcher:
    """Cross-fades window outputs into finished output rows, handing back one band per row of windows.

    The window weights are complementary ramps that sum to 1 wherever windows overlap, so a pixel is final
    once every window covering it is in. Windows arrive row by row and left to right; after window c, the
    columns left of window c + 1 are complete across its row, and after a whole row, the rows above the next
    row's windows are final. Floats are kept only for what is still open (the right-hand overlap of the last
    window, the bottom overlap of the last row of windows); everything else goes straight into the band in
    the output dtype, so memory is one band, not a float strip and not the image."""

    def __init__(self, grid: Grid, scale: int, channels: int, dtype: np.dtype, finish):
        """finish: float 2-D array -> `dtype` (rounding, saturation)."""
        self.grid, self.scale, self.channels, self.dtype, self.finish = grid, scale, channels, dtype, finish
        self.width = grid.width * scale
        self.carry = np.zeros((channels, 0, self.width), np.float32)  # rows the next row of windows adds to
        self.next_carry = self.carry
        self.seam = np.zeros((channels, 0, 0), np.float32)  # the previous window's right-hand overlap
        self.band = np.empty((0, self.width, channels), dtype)

    def add(self, tile: Tile, sr: np.ndarray) -> np.ndarray | None:
        """sr: the window's output, C x h x w float32 (modified in place). Returns the band of output rows
        that the last window of a row completes (H x W x C in `dtype`), else None."""
        ys, xs, s = self.grid.ys, self.grid.xs, self.scale
        r, c = tile.row, tile.col
        top, bottom = ys.win_start[r] * s, ys.win_end[r] * s
        final = (ys.win_start[r + 1] if r + 1 < len(ys.win_start) else self.grid.height) * s
        x0, last = xs.win_start[tile.col] * s, c + 1 == len(xs.win_start)
        sr *= window_weights(self.grid, tile, s)[None]
        if c == 0:
            self.band = np.empty((final - top, self.width, self.channels), self.dtype)
            self.next_carry = np.empty((self.channels, bottom - final, self.width), np.float32)
        else:
            sr[:, :, :self.seam.shape[2]] += self.seam
        done = sr.shape[2] if last else xs.win_start[c + 1] * s - x0  # columns complete across the row
        if not last:
            self.seam = sr[:, :, done:].copy()
        part = sr[:, :, :done]
        part[:, :self.carry.shape[1]] += self.carry[:, :, x0:x0 + done]
        self.next_carry[:, :, x0:x0 + done] = part[:, final - top:]
        for ch in range(self.channels):
            self.band[:, x0:x0 + done, ch] = self.finish(part[ch, :final - top])
        if not last:
            return None
        self.carry = self.next_carry
        return self.band
